// The xnai-streams dashboard: hash-routed views over the JSON API, polled
// every two seconds. Everything from the server is put on the page as text
// (textContent, never HTML), so message data cannot run as script.
"use strict";

(function () {
  const POLL_MS = 2000;
  const TOKEN_KEY = "xnai-streams-dashboard-token";
  const state = { view: null, timer: null, writes: false, seq: 0 };

  // Errors of the page itself are kept where a test (or a curious
  // operator, in the console) can read them.
  const errors = (window.__dashboardErrors = []);
  window.addEventListener("error", (e) => errors.push(String(e.message)));
  window.addEventListener("unhandledrejection", (e) => errors.push(String(e.reason)));

  // ---- DOM -------------------------------------------------------------

  // h("td", {class: "n"}, "text", node, ...): strings become text nodes.
  function h(tag, props, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    put(el, children);
    return el;
  }

  function put(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function fill(el, ...children) {
    el.replaceChildren();
    return put(el, children);
  }

  function $(id) {
    return document.getElementById(id);
  }

  // A link inside the page; every part is encoded.
  function link(text, ...parts) {
    return h("a", { href: "#/" + parts.map(encodeURIComponent).join("/") }, text);
  }

  function table(headers, rows, props) {
    // A numeric column (its cells right-aligned) gets a right-aligned header.
    const first = Array.isArray(rows) && rows.length ? rows[0] : null;
    const numeric = (i) => !!(first && first.children && first.children[i] &&
      first.children[i].classList.contains("n"));
    return h("table", props || {},
      h("thead", {}, h("tr", {}, headers.map((x, i) => h("th", numeric(i) ? { class: "n" } : {}, x)))),
      h("tbody", {}, rows));
  }

  function dash(v) {
    return v === null || v === undefined || v === "" ? "-" : v;
  }

  function ms(v) {
    if (v === null || v === undefined) return "-";
    if (v < 1000) return v + "ms";
    const s = Math.floor(v / 1000);
    if (s < 60) return (v / 1000).toFixed(1) + "s";
    const m = Math.floor(s / 60);
    if (m < 60) return m + "m " + (s % 60) + "s";
    const hh = Math.floor(m / 60);
    if (hh < 48) return hh + "h " + (m % 60) + "m";
    return Math.floor(hh / 24) + "d " + (hh % 24) + "h";
  }

  function rate(v) {
    if (v === null || v === undefined) return "-";
    return (v >= 10 ? v.toFixed(0) : v.toFixed(1)) + "/min";
  }

  function clip(text, n) {
    return text.length > n ? text.slice(0, n - 1) + "…" : text;
  }

  // ---- talking to the server ---------------------------------------------

  async function getJson(path) {
    const res = await fetch(path, { headers: { Accept: "application/json" } });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(errorText(data, res));
    return data;
  }

  function token() {
    return $("token").value.trim();
  }

  async function post(path, body) {
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (token()) headers.Authorization = "Bearer " + token();
    const res = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
    const data = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(errorText(data, res));
    return data;
  }

  function errorText(data, res) {
    const e = data && data.error;
    return e ? e.kind + ": " + e.message : res.status + " " + res.statusText;
  }

  function notice(text, kind) {
    const el = $("notice");
    el.className = kind || "info";
    el.hidden = !text;
    fill(el, text || "");
  }

  // Runs a change: on success says so and refreshes the view.
  async function act(what, fn) {
    notice("");
    try {
      const text = await fn();
      if (text) notice(text, "ok");
      refresh();
    } catch (e) {
      notice(what + " refused: " + e.message, "error");
    }
  }

  // ---- charts (uPlot) ------------------------------------------------------

  const COLORS = ["#2b7bb9", "#d9822b", "#3a9d5d", "#b9472b", "#7a4cb9", "#8a8a2b"];

  // A chart in `box`, kept across refreshes: data is swapped in place.
  function chart(box, key, data, title) {
    const charts = state.view.charts;
    const labels = data.series.map((s) => s.label).join("\n");
    const rows = [data.t].concat(data.series.map((s) => s.values));
    const width = Math.max(260, Math.min(box.clientWidth || 360, 560));
    let c = charts[key];
    if (c && (c.labels !== labels || !box.contains(c.plot.root))) {
      c.plot.destroy();
      c = null;
    }
    if (!c) {
      const opts = {
        title,
        width,
        height: 150,
        scales: {
          x: {
            time: true,
            // One sample (or none) yet: show the last minute, not an
            // axis stretched over years.
            range: (u, min, max) => {
              if (min === null || max === null || min === max) {
                const end = max === null ? Date.now() / 1000 : max;
                return [end - 60, end];
              }
              return [min, max];
            },
          },
        },
        axes: [{}, { size: 48 }],
        series: [{}].concat(data.series.map((s, i) => ({
          label: s.label,
          stroke: COLORS[i % COLORS.length],
          width: 1.5,
          spanGaps: false,
          value: (u, v) => (v === null || v === undefined ? "-" : v.toFixed(1) + "/min"),
        }))),
      };
      fill(box);
      c = { plot: new uPlot(opts, rows, box), labels };
      charts[key] = c;
    } else {
      c.plot.setData(rows);
    }
    if (data.t.length < 2) {
      box.dataset.empty = "the chart fills as the dashboard samples";
    } else {
      delete box.dataset.empty;
    }
  }

  // ---- views ---------------------------------------------------------------

  function section(title, ...children) {
    return h("section", {}, h("h2", {}, title), children);
  }

  const views = {};

  views.overview = {
    url: () => "/api/overview",
    mount(root) {
      this.el = {
        health: h("div", { id: "health" }),
        streams: h("div", { id: "streams" }),
        groups: h("div", { id: "groups" }),
        dlq: h("div", { id: "dlq-summary" }),
      };
      fill(root,
        section("Health", this.el.health),
        section("Streams", this.el.streams),
        section("Groups", this.el.groups),
        section("Dead letters", this.el.dlq));
    },
    update(d) {
      const problems = d.problems.length
        ? h("ul", { class: "problems" }, d.problems.map((p) => h("li", {}, p)))
        : h("p", { class: "muted" }, "No threshold exceeded.");
      const t = d.thresholds || {};
      fill(this.el.health,
        h("p", {},
          h("span", { class: "badge big " + d.status, id: "health-status" }, d.status),
          " ", d.backend, " ", dash(d.server_version),
          d.latency_ms === null ? "" : ", latency " + d.latency_ms.toFixed(1) + " ms"),
        problems,
        h("p", { class: "muted" },
          "Thresholds: lag ", dash(t.max_lag), ", oldest pending ", ms(t.max_oldest_pending_ms),
          ", claimable ", dash(t.max_claimable), ", dead-letter growth ",
          dash(t.max_dlq_growth_per_minute), "/min."),
        d.errors.length ? h("p", { class: "error" }, "Not read this time: " + d.errors.join("; ")) : null);

      if (!d.streams.length) {
        fill(this.el.streams, h("p", { class: "muted" }, "No streams."));
      } else {
        const rows = d.streams.map((s) => h("tr", { "data-stream": s.name },
          h("td", {}, s.name),
          h("td", { class: "n length" }, dash(s.length)),
          h("td", { class: "n" }, rate(s.in_per_min)),
          h("td", {}, s.groups.map((g, i) => [i ? ", " : "", link(g, "group", g)])),
          h("td", { class: "chart", "data-chart": s.name })));
        fill(this.el.streams, table(["stream", "length", "in", "groups", "in and out, last minutes"], rows, { id: "streams-table" }));
        for (const s of d.streams) {
          const box = this.el.streams.querySelector('td[data-chart="' + CSS.escape(s.name) + '"]');
          chart(box, "stream:" + s.name, s.chart, null);
        }
      }

      if (!d.groups.length) {
        fill(this.el.groups, h("p", { class: "muted" }, "No groups."));
      } else {
        const rows = d.groups.map((g) => h("tr", { "data-group": g.group, class: g.claimable ? "warn" : "" },
          h("td", {}, link(g.group, "group", g.group)),
          h("td", {}, g.streams.join(", "), g.missing_on.length ? h("span", { class: "flag stuck" }, "missing on " + g.missing_on.join(", ")) : null),
          h("td", { class: "n pending" }, g.pending),
          h("td", { class: "n" }, dash(g.lag)),
          h("td", { class: "n" }, ms(g.oldest_pending_ms)),
          h("td", { class: "n claimable" }, g.claimable),
          h("td", { class: "n" }, g.scheduled_retries + " + " + g.ready_retries),
          h("td", { class: "n" }, g.consumers),
          h("td", { class: "n dead" }, g.dead_letters),
          h("td", { class: "n" }, rate(g.rates_per_min.out)),
          h("td", { class: "n" }, rate(g.rates_per_min.retries)),
          h("td", { class: "n" }, rate(g.rates_per_min.dead_letters))));
        fill(this.el.groups, table(["group", "streams", "pending", "lag", "oldest pending", "claimable",
          "retries (scheduled + ready)", "consumers", "dead letters", "done", "retried", "dead-lettered"], rows, { id: "groups-table" }));
      }

      const reasons = Object.entries(d.dlq.by_reason).map(([r, n]) =>
        h("tr", {}, h("td", {}, h("a", { href: "#/dlq?reason=" + encodeURIComponent(r) }, r)), h("td", { class: "n" }, n)));
      const box = h("div", { class: "chart" });
      fill(this.el.dlq,
        h("p", {}, h("a", { href: "#/dlq" }, h("span", { id: "dlq-total", class: "big" }, d.dlq.total), " dead letters"),
          d.dlq.without_provenance ? " (" + d.dlq.without_provenance + " without provenance)" : ""),
        reasons.length ? table(["reason", "count"], reasons, { id: "reasons" }) : null,
        box);
      chart(box, "dlq", d.dlq.chart, "dead letters added");
    },
  };

  views.group = {
    url() {
      return "/api/groups/" + encodeURIComponent(this.name);
    },
    mount(root, args) {
      this.name = args[0];
      this.el = {
        head: h("div"),
        chart: h("div", { class: "chart wide" }),
        streams: h("div"),
        consumers: h("div", { id: "consumers" }),
        pending: h("div"),
      };
      const actions = state.writes ? h("p", { class: "actions" },
        h("button", { id: "claim", onclick: () => this.claim() }, "Claim idle work"),
        " ",
        h("button", { id: "prune", onclick: () => this.prune() }, "Prune stale consumers")) : null;
      fill(root,
        h("h1", {}, "Group ", h("span", { class: "name" }, this.name)),
        this.el.head, actions,
        section("Rates", this.el.chart),
        section("Streams", this.el.streams),
        section("Consumers", this.el.consumers),
        section("Pending entries", this.el.pending));
    },
    update(d) {
      const t = d.totals;
      const r = d.rates_per_min;
      fill(this.el.head,
        h("p", {}, "Claims after ", ms(d.config.claim_idle_ms), " idle · reads ", d.config.streams.join(", ")),
        h("p", { class: "stats" },
          stat("pending", t.pending), stat("oldest pending", ms(t.oldest_pending_ms)),
          stat("claimable", t.claimable), stat("scheduled retries", t.scheduled_retries),
          stat("ready retries", t.ready_retries), stat("dead letters", t.dead_letters),
          stat("done", rate(r.out)), stat("retried", rate(r.retries)), stat("dead-lettered", rate(r.dead_letters))));
      chart(this.el.chart, "group", d.chart, null);
      fill(this.el.streams, table(["stream", "length", "pending", "lag", "oldest pending", "claimable", "scheduled", "ready", "done", "retried"],
        d.streams.map((s) => h("tr", { "data-stream": s.stream },
          h("td", {}, s.stream, s.group_exists ? "" : h("span", { class: "flag stuck" }, "group missing")),
          h("td", { class: "n" }, s.length), h("td", { class: "n" }, s.pending), h("td", { class: "n" }, dash(s.lag)),
          h("td", { class: "n" }, ms(s.oldest_pending_ms)), h("td", { class: "n" }, s.claimable),
          h("td", { class: "n" }, s.scheduled_retries), h("td", { class: "n" }, s.ready_retries),
          h("td", { class: "n" }, rate(s.rates_per_min.out)), h("td", { class: "n" }, rate(s.rates_per_min.retries))))));
      const rows = d.consumers.map((c) => h("tr", { "data-consumer": c.name, class: c.flags.length ? "warn" : "" },
        h("td", {}, c.name, c.flags.map((f) => h("span", { class: "flag " + f }, f))),
        h("td", {}, c.stream),
        h("td", { class: "n pending" }, c.pending),
        h("td", { class: "n" }, ms(c.idle_ms)),
        h("td", { class: "lease " + c.lease }, c.lease === "expired" ? "expired (claimable)" : c.lease),
        h("td", {}, state.writes && c.pending > 0
          ? h("button", { class: "release", onclick: () => this.release(c) }, "Release")
          : null)));
      fill(this.el.consumers, rows.length
        ? table(["consumer", "stream", "pending", "idle", "lease", ""], rows, { id: "consumers-table" })
        : h("p", { class: "muted" }, "No consumers."),
      h("p", { class: "muted" }, "Stuck: holds entries idle past the claim threshold. Stale: holds nothing, idle past ", ms(d.stale_after_ms), "."));
      const prow = d.pending.map((p) => h("tr", { class: p.claimable ? "warn" : "" },
        h("td", {}, p.retry
          ? h("a", { href: "#/message/" + encodeURIComponent(p.stream) + "/" + encodeURIComponent(p.id) + "?in=retry" }, p.id)
          : link(p.id, "message", p.stream, p.id)),
        h("td", {}, p.stream + (p.retry ? " (retry)" : "")),
        h("td", {}, p.consumer), h("td", { class: "n" }, ms(p.idle_ms)), h("td", { class: "n" }, p.deliveries)));
      fill(this.el.pending, prow.length
        ? table(["id", "stream", "consumer", "idle", "deliveries"], prow)
        : h("p", { class: "muted" }, "Nothing pending."),
      d.pending_more ? h("p", { class: "muted" }, "Showing the first " + d.pending_listed + ".") : null);
    },
    claim() {
      const g = this.name;
      if (!window.confirm("Claim the entries of group " + g + " idle past its claim threshold, and hand them back to its workers at once?")) return;
      act("Claim", async () => {
        const r = await post("/api/groups/" + encodeURIComponent(g) + "/claim", {});
        return "Claimed and handed back " + r.handed_back + "; dead-lettered " + r.dead_lettered + " poison.";
      });
    },
    release(c) {
      const g = this.name;
      const path = "/api/groups/" + encodeURIComponent(g) + "/release";
      act("Release", async () => {
        const plan = await post(path, { consumer: c.name, stream: c.stream, dry_run: true });
        if (!window.confirm("Hand back the " + plan.would_release + " entries " + c.name + " holds on " + c.stream + ", claimable at once by the group's workers?")) return null;
        const r = await post(path, { consumer: c.name, stream: c.stream, entries: plan.entries });
        return "Released " + r.released + " entries of " + c.name + ".";
      });
    },
    prune() {
      const g = this.name;
      const path = "/api/groups/" + encodeURIComponent(g) + "/prune";
      act("Prune", async () => {
        const plan = await post(path, { dry_run: true });
        if (!plan.would_remove.length) return "No stale consumers to prune.";
        if (!window.confirm("Remove " + plan.would_remove.length + " stale consumers: " + plan.would_remove.join(", ") + "?")) return null;
        const r = await post(path, {});
        return "Removed " + r.removed.length + " consumers.";
      });
    },
  };

  function stat(label, value) {
    return h("span", { class: "stat" }, h("b", {}, String(value)), " ", label);
  }

  views.message = {
    url() {
      const q = new URLSearchParams({ id: this.id });
      if (this.stream) q.set("stream", this.stream);
      if (this.place) q.set("in", this.place);
      return "/api/message?" + q.toString();
    },
    mount(root, args, place) {
      [this.stream, this.id] = place === "dead_letter" ? [args[1] || "", args[0]] : args;
      this.place = place;
      this.el = { where: h("div", { id: "where" }), envelope: h("div", { id: "envelope" }) };
      fill(root, h("h1", {}, "Message ", h("span", { class: "name" }, this.id)),
        section("Where it is", this.el.where), section("Envelope", this.el.envelope));
    },
    update(d) {
      const e = d.envelope;
      const lines = [];
      if (d.found_in === "dead_letter") {
        const p = d.dead_letter || {};
        lines.push(h("li", { class: "dead" }, "In the dead-letter queue: ", dash(p.reason),
          " (group ", dash(p.group), ", consumer ", dash(p.consumer), ", failed at ", dash(p.failed_at), ", from ",
          dash(p.origin_stream), " ", dash(p.origin_id), ")"));
        if (state.writes) {
          lines.push(h("li", {}, h("button", { class: "replay", onclick: () => replayOne(d.id, p.group) }, "Replay to its group")));
        }
      } else if (d.found_in === "retry") {
        lines.push(h("li", {}, "A retry copy in the ready stream of group ", link(d.retry_group, "group", d.retry_group), ": ",
          d.held_by ? "pending with " + d.held_by.consumer + " (delivered " + d.held_by.deliveries + "x, idle " + ms(d.held_by.idle_ms) + ")" : "waiting to be read"));
      }
      for (const g of d.groups) {
        if (!g.state) continue;
        let text;
        if (g.state === "pending") {
          text = ["pending with ", h("b", {}, g.consumer), ", delivered " + g.deliveries + "x, idle " + ms(g.idle_ms),
            g.lease_expired ? h("span", { class: "flag stuck" }, "lease expired") : ""];
        } else if (g.state === "new") {
          text = "not delivered yet";
        } else if (g.state === "done") {
          text = "done (acknowledged, retried or dead-lettered)";
        } else {
          text = g.state;
        }
        lines.push(h("li", { "data-group": g.group }, "Group ", link(g.group, "group", g.group), ": ", text,
          g.scheduled_retries ? " · " + g.scheduled_retries + " retries scheduled" : ""));
      }
      for (const r of d.retries) {
        lines.push(h("li", {}, "Retry ", link(r.id, "message", d.stream, r.id), " (retry " + r.retry_count + ") for group ",
          link(r.group, "group", r.group), ": ", r.held_by ? "pending with " + r.held_by.consumer : "waiting to be read",
          r.error ? " · last error: " + r.error : ""));
      }
      for (const x of d.dead_letters) {
        lines.push(h("li", { class: "dead" }, "Dead letter ", h("a", { href: "#/dead-letter/" + encodeURIComponent(x.dlq_id) + "/" + encodeURIComponent(d.stream) }, x.dlq_id),
          ": ", dash(x.reason), " (group ", dash(x.group), ", at ", dash(x.failed_at), ")"));
      }
      fill(this.el.where, lines.length ? h("ul", {}, lines) : h("p", { class: "muted" }, "Only in the stream; no group reads it."),
        d.notes.map((n) => h("p", { class: "muted" }, n)));
      const rows = [
        ["stream", d.stream], ["id", d.id], ["found in", d.found_in.replace("_", " ")],
        ["ts", e.ts], ["mid", dash(e.mid)], ["retry count", e.retry_count],
        ["deliveries", dash(d.deliveries)], ["replays", e.replay_count], ["replayed from", dash(e.replayed_from)],
        ["status", e.status], ["error", dash(e.error)], ["traceparent", dash(e.traceparent)],
      ];
      fill(this.el.envelope,
        h("table", { class: "kv" }, h("tbody", {}, rows.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", { "data-field": k }, String(v)))))),
        h("h3", {}, "data"),
        h("pre", { id: "data" }, JSON.stringify(e.data, null, 2)));
    },
  };

  function replayOne(id, group) {
    act("Replay", async () => {
      const plan = await post("/api/dlq/replay", { ids: [id], dry_run: true });
      if (!plan.would_replay.length) {
        const why = plan.skipped.map((s) => s.reason.kind).concat(plan.duplicates.map(() => "duplicate"));
        throw new Error("nothing to replay (" + (why.join(", ") || "not found") + ")");
      }
      if (!window.confirm("Replay dead letter " + id + " to group " + dash(group) + "?")) return null;
      const r = await post("/api/dlq/replay", { ids: [id] });
      // The dead letter is gone: a page showing it goes back to the queue.
      if (state.view && state.view.place === "dead_letter") location.hash = "#/dlq";
      return "Replayed " + r.replayed.length + " (new id " + r.replayed.map((x) => x.new_id).join(", ") + ").";
    });
  }

  const FILTERS = ["stream", "group", "reason", "since", "until", "older_than"];

  views.dlq = {
    url() {
      const q = new URLSearchParams(this.filter);
      q.set("limit", "50");
      if (this.cursor) q.set("after", this.cursor);
      return "/api/dlq?" + q.toString();
    },
    mount(root, args, _place, query) {
      this.filter = {};
      for (const k of FILTERS) if (query.get(k)) this.filter[k] = query.get(k);
      this.cursor = null;
      this.pages = [];
      const inputs = FILTERS.map((k) => h("label", {}, k.replace("_", " "),
        h("input", { name: k, value: this.filter[k] || "", placeholder: k === "since" || k === "until" ? "1h or RFC 3339" : k === "older_than" ? "7d" : "" })));
      const form = h("form", { id: "dlq-filter", onsubmit: (ev) => { ev.preventDefault(); this.apply(form); } },
        inputs, h("button", { type: "submit" }, "Filter"));
      this.el = { counts: h("div", { id: "dlq-counts" }), list: h("div", { id: "dlq-list" }), paging: h("p", { class: "paging" }) };
      const bulk = state.writes ? h("p", { class: "actions" },
        h("button", { id: "replay-matching", onclick: () => this.bulk("replay") }, "Replay matching"), " ",
        h("button", { id: "purge-matching", onclick: () => this.bulk("purge") }, "Purge matching")) : null;
      fill(root, h("h1", {}, "Dead letters"), form, this.el.counts, bulk, this.el.list, this.el.paging);
    },
    apply(form) {
      const q = new URLSearchParams();
      for (const k of FILTERS) {
        const v = form.elements[k].value.trim();
        if (v) q.set(k, v);
      }
      const s = q.toString();
      location.hash = "#/dlq" + (s ? "?" + s : "");
    },
    async extra() {
      const q = new URLSearchParams(this.filter);
      return getJson("/api/dlq/stats?" + q.toString());
    },
    update(d, stats) {
      if (stats) {
        const reasons = Object.entries(stats.by_reason).map(([r, n]) => h("tr", {}, h("td", {}, r), h("td", { class: "n" }, n)));
        fill(this.el.counts, h("p", {}, h("span", { id: "dlq-count", class: "big" }, stats.total), " matching",
          stats.oldest_failed_at ? ", failed between " + stats.oldest_failed_at + " and " + stats.newest_failed_at : ""),
        reasons.length ? table(["reason", "count"], reasons, { id: "dlq-reasons" }) : null);
      }
      const rows = d.entries.map((m) => {
        const p = m.dead_letter || {};
        const stream = p.origin_stream || "";
        return h("tr", { "data-dlq-id": m.id },
          h("td", {}, h("a", { href: "#/dead-letter/" + encodeURIComponent(m.id) + "/" + encodeURIComponent(stream) }, m.id)),
          h("td", {}, dash(p.origin_stream)), h("td", {}, p.group ? link(p.group, "group", p.group) : "-"),
          h("td", {}, dash(p.reason)), h("td", {}, dash(p.failed_at)), h("td", { class: "n" }, m.retry_count),
          h("td", { class: "data" }, clip(JSON.stringify(m.data), 80)),
          h("td", {}, state.writes ? h("button", { class: "replay", onclick: () => replayOne(m.id, p.group) }, "Replay") : null));
      });
      fill(this.el.list, rows.length
        ? table(["id", "stream", "group", "reason", "failed at", "retries", "data", ""], rows, { id: "dlq-table" })
        : h("p", { class: "muted" }, "No dead letters match."));
      fill(this.el.paging,
        this.pages.length ? h("button", { onclick: () => { this.cursor = this.pages.pop() || null; refresh(); } }, "Previous page") : null,
        " ",
        d.next ? h("button", { id: "next-page", onclick: () => { this.pages.push(this.cursor); this.cursor = d.next; refresh(); } }, "Next page") : null);
    },
    bulk(verb) {
      const filter = Object.assign({}, this.filter);
      const all = Object.keys(filter).length === 0;
      const path = "/api/dlq/" + verb;
      act(verb === "replay" ? "Replay" : "Purge", async () => {
        const plan = await post(path, { filter, all, dry_run: true });
        const n = verb === "replay" ? plan.would_replay.length : plan.would_remove.length;
        const skipped = verb === "replay" ? plan.skipped.length + plan.duplicates.length : 0;
        if (!n) return "Nothing to " + verb + (skipped ? " (" + skipped + " skipped)" : "") + ".";
        const what = all ? "every dead letter" : "the dead letters matching the filter";
        if (!window.confirm((verb === "replay" ? "Replay " : "Purge ") + n + " dead letters (" + what + ")?" + (skipped ? " " + skipped + " would be skipped." : ""))) return null;
        const r = await post(path, { filter, all, yes: true });
        return verb === "replay" ? "Replayed " + r.replayed.length + "." : "Purged " + r.removed.length + ".";
      });
    },
  };

  // ---- routing and polling ---------------------------------------------------

  function route() {
    const hash = location.hash.replace(/^#\/?/, "");
    const [path, qs] = hash.split("?");
    const parts = path.split("/").filter((p) => p !== "").map(decodeURIComponent);
    const query = new URLSearchParams(qs || "");
    switch (parts[0]) {
      case "group": return { view: views.group, args: parts.slice(1) };
      case "message": return { view: views.message, args: parts.slice(1), place: query.get("in") };
      case "dead-letter": return { view: views.message, args: parts.slice(1), place: "dead_letter" };
      case "dlq": return { view: views.dlq, args: [], query };
      default: return { view: views.overview, args: [] };
    }
  }

  function show() {
    const r = route();
    if (state.view && state.view.charts) {
      for (const c of Object.values(state.view.charts)) c.plot.destroy();
    }
    const view = Object.create(r.view);
    view.charts = {};
    state.view = view;
    if ($("notice").className !== "ok") notice("");
    view.mount($("view"), r.args, r.place, r.query || new URLSearchParams());
    for (const a of document.querySelectorAll("nav a")) {
      a.classList.toggle("here", (a.id === "nav-dlq") === (r.view === views.dlq));
    }
    refresh();
  }

  async function refresh() {
    clearTimeout(state.timer);
    const view = state.view;
    const seq = ++state.seq;
    try {
      const [data, extra, head] = await Promise.all([
        getJson(view.url()),
        view.extra ? view.extra() : null,
        view === state.view && view.url() === "/api/overview" ? null : getJson("/api/health"),
      ]);
      if (seq !== state.seq || view !== state.view) return;
      header(head || data);
      view.update(data, extra);
      $("view").classList.remove("stale");
      if ($("notice").className === "stale") notice("");
    } catch (e) {
      if (seq !== state.seq) return;
      $("view").classList.add("stale");
      notice("Cannot refresh: " + e.message, "stale");
    }
    state.timer = setTimeout(refresh, POLL_MS);
  }

  function header(d) {
    const badge = $("status");
    badge.className = "badge " + d.status;
    fill(badge, d.status);
    if (d.target) {
      fill($("target"), d.target.redis + (d.target.namespace ? " · namespace " + d.target.namespace : ""));
    }
    if (typeof d.writes === "boolean") {
      state.writes = d.writes;
      $("writes").hidden = !d.writes;
      $("read-only").hidden = d.writes;
    }
    fill($("sampled"), "sampled " + (d.sampled_at || "") +
      (d.history_since ? " · history since " + d.history_since + " (it starts with the dashboard)" : ""));
  }

  async function start() {
    const input = $("token");
    input.value = sessionStorage.getItem(TOKEN_KEY) || "";
    input.addEventListener("change", () => sessionStorage.setItem(TOKEN_KEY, input.value.trim()));
    // The header needs to know whether changes are allowed before a view
    // draws its buttons.
    try {
      header(await getJson("/api/overview"));
    } catch (e) {
      notice("Cannot reach the dashboard's API: " + e.message, "error");
    }
    window.addEventListener("hashchange", show);
    show();
  }

  document.addEventListener("DOMContentLoaded", start);
})();
