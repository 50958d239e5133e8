"""A small Python client for xnai-streams' wire format (redis-py).

It lets an agent written in Python share streams with Rust managers: send
envelopes, read a consumer group's messages and its retries, promote the
group's due retries itself, acknowledge, and dead-letter. It follows
docs/wire-format.md; the script in PROMOTE_LUA is the one the Rust library
runs (streams_redis::PROMOTE_SCRIPT), byte for byte.

    python3 docs/python/xnai_streams.py        # a short demonstration

Needs redis-py (pip install redis) and REDIS_URL (default
redis://127.0.0.1:6379); XNAI_NAMESPACE selects the managers' namespace.
"""
import datetime
import json
import os
import uuid

import redis

PROMOTE_LUA = r"""-- Moves due retries from a group's schedule into its ready stream.
-- KEYS[1]: the schedule (sorted set, score = due time in ms).
-- KEYS[2]: the ready stream.
-- ARGV[1]: most entries moved.
-- Returns {promoted, ms until the next due entry or -1 if none is left}, or
-- {-1, why} when the schedule cannot be read (a foreign value at its key):
-- the caller goes on with its other schedules.
--
-- Self-contained, so that consumers in other languages can EVAL this very
-- text (see docs/wire-format.md, "Retries for consumers in other languages").
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ready_type = redis.call('TYPE', KEYS[2])['ok']
if ready_type ~= 'stream' and ready_type ~= 'none' then
  return {-1, 'WRONGTYPE the ready stream holds a ' .. ready_type}
end
local due = redis.pcall('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
if type(due) == 'table' and due.err then
  return {-1, due.err}
end
for _, member in ipairs(due) do
  local ok, t = pcall(cmsgpack.unpack, member)
  if ok and type(t) == 'table' and #t >= 4 and #t % 2 == 0 then
    redis.call('XADD', KEYS[2], '*', unpack(t, 3))
  else
    -- Not written by move_entry: deliver it as it is rather than lose it.
    redis.call('XADD', KEYS[2], '*', 'schedule_member', member)
  end
  redis.call('ZREM', KEYS[1], member)
end
local next_due = -1
local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #head == 2 then
  next_due = math.max(0, tonumber(head[2]) - now)
end
return {#due, next_due}
"""

RETRY_PREFIX = "xnai:retry"
DLQ_STREAM = "xnai:dlq"


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
