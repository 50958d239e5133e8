"""A small Python client for xnai-streams' wire format (redis-py).

It lets an agent written in Python share streams with Rust managers: send
envelopes, read a consumer group's messages and its retries, promote the
group's due retries itself, and acknowledge. It follows
docs/wire-format.md; it promotes retries with promote_due.lua, the script the
Rust library runs (streams_redis::PROMOTE_SCRIPT).

    python3 docs/python/xnai_streams.py        # a short demonstration

Needs redis-py (pip install redis) and REDIS_URL (default
redis://127.0.0.1:6379); XNAI_NAMESPACE selects the managers' namespace.
"""
import datetime
import json
import os
import pathlib
import uuid

import redis

# The script that promotes due retries: the one the Rust library runs
# (streams_redis::PROMOTE_SCRIPT). Copy promote_due.lua along with this file.
PROMOTE_LUA = (pathlib.Path(__file__).resolve().parent / "promote_due.lua").read_text()

RETRY_PREFIX = "xnai:retry"


class Streams:
    """One consumer of the streams of a namespace (or of none)."""

    def __init__(self, url=None, namespace=None, consumer=None):
        self.r = redis.Redis.from_url(url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"))
        self.ns = namespace if namespace is not None else os.environ.get("XNAI_NAMESPACE")
        self.consumer = consumer or f"py-{os.getpid()}"
        self.promote = self.r.register_script(PROMOTE_LUA)

    # Keys (docs/wire-format.md, "Keys").
    def key(self, stream):
        return f"{self.ns}:{{{stream}}}" if self.ns else stream

    def _owned(self, stream, kind, group):
        prefix = f"{self.ns}:" if self.ns else ""
        return f"{prefix}{RETRY_PREFIX}:{{{stream}}}:{kind}:{group}"

    def schedule_key(self, stream, group):
        return self._owned(stream, "schedule", group)

    def ready_key(self, stream, group):
        return self._owned(stream, "ready", group)

    def send(self, stream, data, max_len=None):
        """XADD an envelope; returns the entry id. Never retried: `mid` lets readers deduplicate."""
        now = datetime.datetime.now(datetime.timezone.utc)
        fields = {
            "data": json.dumps(data, separators=(",", ":")),
            "ts": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "mid": f"py-{uuid.uuid4().hex}",
        }
        return self.r.xadd(self.key(stream), fields, maxlen=max_len, approximate=True).decode()

    @staticmethod
    def decode(fields):
        """An entry as the Rust manager sees it: envelope fields, or (for
        entries without `data`) every field as a string."""
        f = {k.decode(): v for k, v in fields.items()}
        if "data" not in f:
            return {"data": {k: v.decode() for k, v in f.items()}, "retry_count": 0}
        return {
            "data": json.loads(f["data"]),
            "ts": f.get("ts", b"").decode(),
            "retry_count": int(f.get("retry_count", b"0")),
            "mid": f.get("mid", b"").decode() or None,
            "error": f.get("error", b"").decode() or None,
        }

    def join(self, group, stream):
        """Creates the group on the stream and on its retry stream (from the
        beginning), as a Rust manager does; an existing group is kept."""
        for k in (self.key(stream), self.ready_key(stream, group)):
            try:
                self.r.xgroup_create(k, group, id="0", mkstream=True)
            except redis.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise

    def promote_due(self, group, stream, limit=1000):
        """Moves the group's due retries into its ready stream; returns how many."""
        promoted, _ = self.promote(keys=[self.schedule_key(stream, group), self.ready_key(stream, group)], args=[limit])
        if promoted < 0:
            raise RuntimeError(f"retry schedule of {group} on {stream} cannot be promoted")
        return promoted

    def read(self, group, stream, count=10, block_ms=1000):
        """Promotes due retries, then reads new messages of the stream and
        of the group's retry stream in one XREADGROUP. Each message is a
        decoded envelope plus `id`, `key` (where it was read) and
        `from_retry`."""
        self.promote_due(group, stream)
        ready = self.ready_key(stream, group)
        keys = {self.key(stream): ">", ready: ">"}
        replies = self.r.xreadgroup(group, self.consumer, keys, count=count, block=block_ms)
        out = []
        for k, entries in replies or []:
            k = k.decode()
            for entry_id, fields in entries:
                msg = self.decode(fields)
                msg.update(id=entry_id.decode(), key=k, from_retry=(k == ready))
                out.append(msg)
        return out

    def ack(self, group, msg):
        """Acknowledges where the message was read; a retry copy is private
        to the group, so it is deleted too."""
        self.r.xack(msg["key"], group, msg["id"])
        if msg["from_retry"]:
            self.r.xdel(msg["key"], msg["id"])


if __name__ == "__main__":
    s = Streams()
    s.join("agent_wavefront", "xnai:agent_bus")
    sent = s.send("xnai:agent_bus", {"agent_id": "py-1", "action": "task_complete", "n": 3})
    print("sent", sent)
    for msg in s.read("agent_wavefront", "xnai:agent_bus"):
        print("read", msg["key"], msg["id"], msg["data"], "retry", msg["retry_count"])
        s.ack("agent_wavefront", msg)
