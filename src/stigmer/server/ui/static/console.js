// The stigmer console's live parts: the executions listing and one execution's timeline.
// Every text from the API is put with textContent (never as HTML), and control
// characters (terminal escapes) are shown as visible symbols.
"use strict";

(function () {
  const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
  const body = document.body;

  // -- helpers ---------------------------------------------------------------

  // C0 controls but tab and newline, and DEL, as their visible "control pictures" (ESC -> ␛)
  function visible(text) {
    return String(text == null ? "" : text).replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, (c) =>
      c === "\u007f" ? "\u2421" : String.fromCharCode(0x2400 + c.charCodeAt(0)),
    );
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = visible(v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(typeof child === "string" ? document.createTextNode(visible(child)) : child);
    }
    return node;
  }

  function pretty(value) {
    if (typeof value === "string") return value;
    try {
      return JSON.stringify(value, null, 2);
    } catch (_e) {
      return String(value);
    }
  }

  function when(iso) {
    if (!iso) return "-";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    const today = new Date();
    const time = d.toLocaleTimeString([], { hour12: false });
    return d.toDateString() === today.toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
  }

  function duration(startIso, endIso) {
    if (!startIso) return "-";
    const start = new Date(startIso).getTime();
    const end = endIso ? new Date(endIso).getTime() : Date.now();
    let s = Math.max(0, (end - start) / 1000);
    if (s < 10) return `${s.toFixed(1)}s`;
    s = Math.round(s);
    if (s < 3600) return s < 60 ? `${s}s` : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
    return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  }

  function phaseBadge(phase) {
    return el("span", { class: `phase phase-${phase}`, text: phase });
  }

  function live(text, state) {
    const node = document.getElementById("live");
    if (!node) return;
    node.hidden = false;
    node.textContent = text;
    node.dataset.state = state;
  }

  function signedOut() {
    live("signed out: run `stigmer ui` for a new login link", "down");
  }

  // An EventSource that says whether it is connected, and whether the session is gone.
  function stream(url, handlers) {
    const source = new EventSource(url);
    source.onopen = () => live("live", "up");
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (msg) => fn(JSON.parse(msg.data), msg));
    }
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        // refused (401 once the session expired): ask why, say so
        fetch("/ui/api/executions?phase=NONE", { credentials: "same-origin" }).then((r) =>
          r.status === 401 ? signedOut() : live("disconnected: reload the page", "down"),
        );
      } else {
        live("reconnecting…", "down");
      }
    };
    return source;
  }

  async function post(url, payload) {
    const resp = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: payload === undefined ? undefined : JSON.stringify(payload),
    });
    let detail = "";
    try {
      const data = await resp.json();
      detail = typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail || data);
    } catch (_e) {
      detail = resp.statusText;
    }
    return { ok: resp.ok, status: resp.status, detail };
  }

  // -- the executions listing --------------------------------------------------

  const ticking = [];
  setInterval(() => {
    for (const fn of ticking) fn();
  }, 1000);

  function listing() {
    const rows = document.getElementById("execution-rows");
    if (!rows) return;
    const params = new URLSearchParams();
    if (body.dataset.agent) params.set("agent", body.dataset.agent);
    if (body.dataset.phase) params.set("phase", body.dataset.phase);
    for (const id of ["filter-agent", "filter-phase"]) {
      const select = document.getElementById(id);
      if (select) select.addEventListener("change", () => select.form.submit());
    }
    const durations = new Map();
    ticking.push(() => {
      for (const [cell, e] of durations) cell.textContent = duration(e.started_at, e.ended_at);
    });
    stream(`/ui/api/executions/stream?${params}`, {
      executions(data) {
        durations.clear();
        const fresh = data.executions.map((e) => {
          const took = el("td", { class: "num", text: duration(e.started_at, e.ended_at) });
          if (!e.ended_at) durations.set(took, e);
          const tokens = e.input_tokens || e.output_tokens ? `${e.input_tokens} / ${e.output_tokens}` : "-";
          return el(
            "tr",
            { "data-id": e.id, "data-phase": e.phase },
            el("td", {}, el("a", { href: `/ui/executions/${encodeURIComponent(e.id)}`, text: e.id })),
            el("td", {}, el("a", { href: `/ui/agents/${encodeURIComponent(e.agent)}`, text: e.agent })),
            el("td", {}, phaseBadge(e.phase)),
            el("td", {}, el("time", { datetime: e.started_at, text: when(e.started_at) })),
            took,
            el("td", { class: "num", text: String(e.tool_calls) }),
            el("td", { class: "num", title: "input / output tokens", text: tokens }),
            el("td", { class: "wide message", text: e.message || "" }),
          );
        });
        if (!fresh.length) {
          fresh.push(el("tr", { class: "empty" }, el("td", { colspan: 8, text: "No executions." })));
        }
        rows.replaceChildren(...fresh);
      },
    });
  }

  // -- one execution -------------------------------------------------------------

  function execution() {
    const id = body.dataset.execution;
    if (!id) return;
    const timeline = document.getElementById("timeline");
    const phaseNode = document.getElementById("phase");
    const cancel = document.getElementById("cancel");
    const status = document.getElementById("action-status");
    const durationNode = document.getElementById("duration");
    const calls = new Map(); // tool_call_id -> its timeline item
    const approvals = new Map(); // call id -> its approval item
    let phase = body.dataset.phase;
    let toolCount = 0;
    let ended = durationNode.dataset.ended || null;
    const base = `/v1/executions/${encodeURIComponent(id)}`;

    const tick = () => (durationNode.textContent = duration(durationNode.dataset.started, ended));
    tick();
    ticking.push(() => ended || tick());

    function setPhase(p, at) {
      phase = p;
      body.dataset.phase = p;
      phaseNode.className = `phase phase-${p}`;
      phaseNode.textContent = p;
      if (TERMINAL.has(p)) {
        ended = at || new Date().toISOString();
        tick();
        cancel.hidden = true;
        for (const item of approvals.values()) item.querySelector(".decide")?.remove();
      }
    }

    function item(e, kind, ...children) {
      const node = el(
        "li",
        { class: `ev ev-${kind}`, "data-seq": e.seq, "data-type": e.type },
        el("span", { class: "seq", text: String(e.seq) }),
        el("time", { datetime: e.at, text: when(e.at) }),
        el("div", { class: "body" }, ...children),
      );
      timeline.append(node);
      return node;
    }

    function block(label, text, cls) {
      return el("details", { open: true, class: cls || "" }, el("summary", { text: label }), el("pre", { text: pretty(text) }));
    }

    function generic(e) {
      const dl = el("dl", { class: "kv" });
      for (const [k, v] of Object.entries(e.payload || {})) {
        dl.append(el("dt", { text: k }), el("dd", {}, el("pre", { text: pretty(v) })));
      }
      return dl;
    }

    function callIdOf(p) {
      return p.call_id || p.tool_call_id || p.call || null;
    }

    function approvalRequested(e) {
      const p = e.payload;
      const callId = callIdOf(p);
      const node = item(
        e,
        "approval",
        el("strong", { text: `approval asked: ${p.name || p.tool || "a tool call"}` }),
        p.deadline
          ? el("span", { class: "muted", text: ` (until ${when(p.deadline)}${p.on_timeout ? `, then ${p.on_timeout}` : ""})` })
          : null,
        generic(e),
      );
      if (callId && !TERMINAL.has(phase) && !approvals.has(callId)) {
        const reason = el("input", { type: "text", name: "reason", placeholder: "reason (optional)", "aria-label": "reason" });
        const said = el("span", { class: "status", role: "status" });
        const decide = async (decision, scope) => {
          said.textContent = `${decision}…`;
          const payload = { decision };
          if (scope) payload.scope = scope;
          if (reason.value.trim()) payload.reason = reason.value.trim();
          const r = await post(`${base}/approvals/${encodeURIComponent(callId)}`, payload);
          said.textContent = r.ok
            ? `${decision} sent`
            : r.status === 404
              ? `could not ${decision}: this server has no approvals endpoint (404: ${r.detail})`
              : `could not ${decision} (${r.status}): ${r.detail}`;
        };
        const approve = el("button", { type: "button", class: "approve", text: "Approve" });
        const approveRun = el("button", { type: "button", class: "approve approve-run", text: "Approve the rest of the run" });
        const deny = el("button", { type: "button", class: "danger deny", text: "Deny" });
        approve.addEventListener("click", () => decide("approve"));
        approveRun.addEventListener("click", () => decide("approve", "run"));
        deny.addEventListener("click", () => decide("deny"));
        node.querySelector(".body").append(el("div", { class: "decide" }, approve, approveRun, deny, reason, said));
      }
      if (callId) approvals.set(callId, node);
    }

    // tool call id -> its last attempt, from retry events: a call's duration spans them
    const attempts = new Map();
    const render = {
      phase(e) {
        const p = e.payload;
        item(e, "phase", phaseBadge(p.phase), p.error ? el("span", { class: "error-text", text: ` ${p.error}` }) : null);
        setPhase(p.phase, TERMINAL.has(p.phase) ? e.at : null);
        if (p.output) {
          document.getElementById("output").textContent = visible(p.output);
          document.getElementById("output-section").hidden = false;
        }
        if (p.error) {
          document.getElementById("error").textContent = visible(p.error);
          document.getElementById("error-section").hidden = false;
        }
      },
      message(e) {
        const p = e.payload;
        if (p.role === "tool") return; // shown with its tool call's result
        item(e, `msg-${p.role}`, el("span", { class: "who", text: p.role === "human" ? "you" : "agent" }), el("pre", { class: "text", text: p.content }));
      },
      tool_call(e) {
        const p = e.payload;
        const key = p.tool_call_id || `seq-${e.seq}`;
        if (p.status === "started") {
          toolCount += 1;
          document.getElementById("tool-count").textContent = String(toolCount);
          const node = item(
            e,
            "tool",
            el("strong", { class: "tool-name", text: `→ ${p.name}` }),
            el("span", { class: "tool-state muted", text: " running…" }),
            block("arguments", p.args || {}, "args"),
          );
          calls.set(key, node);
          return;
        }
        const ok = p.status === "completed";
        const tries = attempts.get(key);
        const took = p.duration_ms != null ? ` in ${p.duration_ms} ms${tries ? ` over ${tries} attempts` : ""}` : "";
        const result = block(ok ? "result" : "error", p.result || "", ok ? "result" : "result failed");
        const node = calls.get(key);
        if (node) {
          const state = node.querySelector(".tool-state");
          state.textContent = ok ? ` ✓ done${took}` : ` ✗ failed${took}`;
          state.className = `tool-state ${ok ? "ok" : "bad"}`;
          node.classList.add(ok ? "done" : "failed");
          node.querySelector(".body").append(result);
        } else {
          item(e, "tool", el("strong", { class: "tool-name", text: `${ok ? "✓" : "✗"} ${p.name}${took}` }), result);
        }
      },
      usage(e) {
        const p = e.payload;
        document.getElementById("tokens").textContent = `${p.input_tokens || 0} in / ${p.output_tokens || 0} out`;
        item(
          e,
          "usage",
          el("span", {
            class: "muted",
            text: `usage: ${p.input_tokens || 0} in / ${p.output_tokens || 0} out tokens, ${p.requests || 0} model requests, ${p.tool_calls || 0} tool calls`,
          }),
        );
      },
      error(e) {
        const p = e.payload;
        item(e, "error", el("strong", { text: `error (${p.kind || "?"})` }), el("pre", { class: "error-text", text: p.message || "" }));
      },
      retry(e) {
        const p = e.payload;
        if (p.tool_call_id && Number.isInteger(p.attempt)) attempts.set(p.tool_call_id, p.attempt);
        const what = p.name ? `${p.name}${p.tool_call_id ? ` call ${p.tool_call_id}` : ""}` : p.tool_call_id || "a call";
        item(
          e,
          "retry",
          el("strong", { text: `↻ retry of ${typeof what === "string" ? what : pretty(what)}` }),
          p.attempt != null ? el("span", { text: `, attempt ${p.attempt}` }) : null,
          p.reason ? el("pre", { class: "text", text: p.reason }) : null,
        );
      },
      approval_requested: approvalRequested,
      approval_decided(e) {
        const p = e.payload;
        const callId = callIdOf(p);
        const who = p.who || p.by || p.decided_by;
        item(
          e,
          "approval",
          el("strong", { text: `${p.decision === "approve" || p.decision === "approved" ? "approved" : p.decision === "deny" || p.decision === "denied" ? "denied" : p.decision || "decided"}` }),
          who ? el("span", { text: ` by ${who}` }) : null,
          p.reason ? el("pre", { class: "text", text: p.reason }) : null,
        );
        approvals.get(callId)?.querySelector(".decide")?.remove();
      },
    };

    // every event arrives as a plain message (a type this page does not know is shown as it is)
    const seen = new Set();
    const source = stream(`/ui/api/executions/${encodeURIComponent(id)}/events`, {});
    source.onmessage = (msg) => {
      const e = JSON.parse(msg.data);
      if (seen.has(e.seq)) return;
      seen.add(e.seq);
      (render[e.type] || ((x) => item(x, "other", el("strong", { text: x.type }), generic(x))))(e);
      if (e.type === "phase" && TERMINAL.has(e.payload.phase)) {
        source.close(); // the log is complete: no reconnecting
        live("ended", "done");
      }
    };

    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      status.textContent = "cancelling…";
      const r = await post(`${base}/cancel`);
      status.textContent = r.ok ? "cancel requested" : `could not cancel (${r.status}): ${r.detail}`;
      if (!r.ok) cancel.disabled = false;
    });
  }

  if (body.dataset.page === "executions" || body.dataset.page === "agent") listing();
  if (body.dataset.page === "execution") execution();
})();
