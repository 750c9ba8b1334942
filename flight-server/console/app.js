/* Qilin web console: a single-page app over Qilin's Kylin-compatible REST API.
 * Hand-written, no build step, no libraries, no network access beyond this server.
 *
 * Routes (location.hash):
 *   #/login                      sign-in form
 *   #/projects                   projects with their tables, models and cubes
 *   #/projects/P                 one project: tables (columns, types), models, cubes
 *   #/models/P/M                 a model drawn as a diagram (fact, lookups, join keys)
 *   #/cubes/C                    a cube: dimensions, measures, aggregation groups, segments,
 *                                "Build a range" form, the cube's recent jobs
 *   #/jobs                       Monitor: jobs, live progress, resume / discard
 *   #/jobs/ID                    one job with its steps
 *   #/query                      Insight: SQL, results, EXPLAIN, chart, CSV, history
 *   #/system                     version, mode, metadata version, job lease
 *   #/access                     users (global admins), grants and table rules of a project
 *                                (its ADMINs), one's API keys
 *   #/audit                      the audit log (global admins)
 *
 * The Access and Audit links show only to those who may use them (the sign-in answer's
 * `admin` and `projects`); a page the server refuses (403) says so (#forbidden).
 *
 * Stable hooks for tests (ids unless noted):
 *   page root         #page, its data-page attribute = the route name (login, projects,
 *                     project, model, cube, jobs, job, query, system) once rendered, and
 *                     data-ready="1" when its data has loaded
 *   errors            #error-banner / #error-text (global), .error inside #page (a page's)
 *   sign-in           #login-form, #login-user, #login-password, #login-submit, #login-error
 *   header            #nav, #nav-projects, #nav-query, #nav-jobs, #nav-system, #nav-access,
 *                     #nav-audit, #user-name, #sign-out
 *   refused           #forbidden (a page the server answered 403)
 *   projects          #project-list, a.project-link[data-project]
 *   project           #tables .table-card[data-table] (table.columns rows: name, type),
 *                     #models a.model-link[data-model], #cubes a.cube-link[data-cube]
 *   model             svg#model-diagram with g.diagram-table[data-table] (g.fact for the
 *                     fact table), line.diagram-join[data-lookup], text.join-label
 *   cube              #cube-status, #cube-cuboids, #cube-size, #cube-dimensions, #cube-measures,
 *                     #cube-aggs, table#segments with tr.segment-row[data-status][data-start]
 *                     [data-end] (ms), #build-form, #build-start, #build-end (YYYY-MM-DD, UTC),
 *                     #build-type, #build-submit, #build-message, #cube-jobs (job rows)
 *   jobs              table#jobs-table with tr.job-row[data-job][data-status], .job-progress
 *                     [data-progress], .job-status, .job-error, button.job-resume,
 *                     button.job-discard; #jobs-refresh (auto-refresh state)
 *   job               #job-detail[data-job][data-status], #job-progress[data-progress],
 *                     #job-error, table#job-steps tr.step-row[data-status]
 *   query             #query-project, #query-sql, #query-limit, #query-run, #query-status,
 *                     #query-duration, #query-cube, #query-fallback (when the query read a
 *                     much larger cuboid than it needed), #query-error, table#query-results
 *                     (tr.result-row; data-rows on the table), table#query-explain
 *                     (tr.explain-row[data-type]), #chart-type (bar|line), #chart-label,
 *                     #chart-value, svg#query-chart (rect.bar / path.chart-line), #query-csv,
 *                     #query-history li.history-item
 *   system            #system-info dd[data-key]
 *   access            #users-table tr.user-row[data-user][data-disabled][data-admin] with
 *                     button.user-toggle; #user-form (#new-user-name, #new-user-password,
 *                     #new-user-admin, #new-user-groups, #new-user-submit, #user-message);
 *                     #access-project; #grants-table tr.grant-row[data-principal] with
 *                     button.grant-revoke; #grant-form (#grant-kind, #grant-name,
 *                     #grant-role, #grant-submit, #grant-message); #rules-table
 *                     tr.rule-row[data-rule] with button.rule-remove; #rule-form
 *                     (#rule-table, #rule-kind, #rule-name, #rule-type, #rule-column,
 *                     #rule-filter, #rule-submit, #rule-message); #keys-table
 *                     tr.key-row[data-key] with button.key-revoke; #key-user (admins),
 *                     #key-expires,
 *                     #key-create, #key-secret (the new key, shown once)
 *   audit             #audit-user, #audit-limit, #audit-reload, #audit-table
 *                     tr.audit-row[data-user][data-action][data-outcome] (newest first)
 */
(function () {
  "use strict";

  // ---- session -----------------------------------------------------------------------------
  const S = {
    get token() { return sessionStorage.getItem("qilin.token"); },
    get user() { return sessionStorage.getItem("qilin.user") || ""; },
    get canOperate() { return sessionStorage.getItem("qilin.can_operate") === "true"; },
    /** A global admin (users, audit). */
    get admin() { return sessionStorage.getItem("qilin.admin") === "true"; },
    /** The caller's role by project, e.g. {"ssb": "QUERY"}. */
    get roles() {
      try { return JSON.parse(sessionStorage.getItem("qilin.roles") || "{}"); } catch (_) { return {}; }
    },
    /** ADMIN somewhere: the Access page is useful. */
    get grantsAnywhere() { return S.admin || Object.values(S.roles).includes("ADMIN"); },
    save(user, token, canOperate, admin, roles) {
      sessionStorage.setItem("qilin.user", user);
      sessionStorage.setItem("qilin.token", token);
      sessionStorage.setItem("qilin.can_operate", String(!!canOperate));
      sessionStorage.setItem("qilin.admin", String(!!admin));
      sessionStorage.setItem("qilin.roles", JSON.stringify(roles || {}));
    },
    clear() {
      ["qilin.user", "qilin.token", "qilin.can_operate", "qilin.admin", "qilin.roles"]
        .forEach((k) => sessionStorage.removeItem(k));
    },
  };

  // ---- HTTP --------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  function base64Utf8(text) {
    const bytes = new TextEncoder().encode(text);
    let bin = "";
    bytes.forEach((b) => { bin += String.fromCharCode(b); });
    return btoa(bin);
  }

  /** Calls the REST API; throws ApiError with the server's `msg` on HTTP errors. */
  async function api(method, path, body, authorization) {
    const headers = { "X-Requested-With": "XMLHttpRequest", Accept: "application/json" };
    const auth = authorization || (S.token ? "Bearer " + S.token : null);
    if (auth) headers.Authorization = auth;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let res;
    try {
      res = await fetch(path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (e) {
      throw new ApiError(0, "Cannot reach the Qilin server (" + e.message + ")");
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try { data = JSON.parse(text); } catch (_) { data = null; }
    }
    if (!res.ok) {
      const msg = (data && (data.msg || data.exception || data.message)) || text || res.statusText;
      if (res.status === 401 && !authorization) {
        S.clear();
        pendingMessage = "Your session has ended: sign in again. (" + msg + ")";
        go("#/login");
      }
      throw new ApiError(res.status, "HTTP " + res.status + " " + res.statusText + ": " + msg);
    }
    if (data === null && text) throw new ApiError(res.status, method + " " + path + ": the answer is not JSON");
    return data;
  }

  // ---- DOM helpers -------------------------------------------------------------------------
  /** h("tag#id.cls", {attrs}, children...) */
  function h(spec, attrs, ...children) {
    const m = /^([a-z0-9]+)?(?:#([\w-]+))?((?:\.[\w-]+)*)$/i.exec(spec);
    const el = document.createElement((m && m[1]) || "div");
    if (m && m[2]) el.id = m[2];
    if (m && m[3]) el.className = m[3].slice(1).replace(/\./g, " ");
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }
  const SVG_NS = "http://www.w3.org/2000/svg";
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) el.setAttribute(k, String(v));
    }
    append(el, children);
    return el;
  }
  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else if (k === "value") el.value = v;
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
  }
  function append(el, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }
  const $ = (sel, root) => (root || document).querySelector(sel);

  /** A grid table; `attrs` (e.g. an id) go on the <table>. */
  function table(cls, headers, rows, attrs) {
    return h("table.grid" + (cls ? "." + cls : ""), attrs || null,
      headers.length ? h("thead", null, h("tr", null, headers.map((t) => h("th", null, t)))) : null,
      h("tbody", null, rows));
  }
  function badge(status) {
    return h("span.badge.status-" + String(status || "").replace(/\W/g, ""), null, status || "?");
  }
  function progressBar(id, pct, status) {
    const p = Math.max(0, Math.min(100, Number(pct) || 0));
    const cls = status === "FINISHED" ? ".done" : status === "ERROR" ? ".failed" : "";
    const el = h("span" + (id ? "#" + id : "") + ".progress.job-progress" + cls,
      { "data-progress": String(p), role: "progressbar", "aria-valuenow": String(p) },
      h("span.bar", { style: "width:" + p + "%" }), h("span.label", null, p.toFixed(0) + " %"));
    return el;
  }

  // ---- formatting --------------------------------------------------------------------------
  const pad = (n) => String(n).padStart(2, "0");
  function fmtDate(ms) {
    if (!ms) return "";
    const d = new Date(Number(ms));
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate());
  }
  function fmtTime(ms) {
    if (!ms) return "";
    const d = new Date(Number(ms));
    return fmtDate(ms) + " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + " UTC";
  }
  function fmtBytes(n) {
    n = Number(n) || 0;
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }
  function fmtSeconds(sec) {
    sec = Number(sec) || 0;
    if (sec < 60) return sec.toFixed(sec < 10 ? 1 : 0) + " s";
    const m = Math.floor(sec / 60);
    return m + " min " + Math.round(sec - m * 60) + " s";
  }
  const fmtInt = (n) => (n === null || n === undefined ? "" : Number(n).toLocaleString("en-US"));
  /** "YYYY-MM-DD" → ms since the epoch at UTC midnight, or null. */
  function parseDay(text) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(String(text).trim());
    if (!m) return null;
    const ms = Date.UTC(+m[1], +m[2] - 1, +m[3]);
    return fmtDate(ms) === m[0] ? ms : null;
  }

  // ---- errors ------------------------------------------------------------------------------
  let pendingMessage = null;
  function showError(msg) {
    $("#error-text").textContent = msg;
    $("#error-banner").hidden = false;
  }
  function clearError() { $("#error-banner").hidden = true; $("#error-text").textContent = ""; }
  window.addEventListener("error", (e) => showError("Console error: " + (e.message || e)));
  window.addEventListener("unhandledrejection", (e) =>
    showError((e.reason && e.reason.message) || String(e.reason)));
  const errorBox = (e, id) => h("div.error" + (id ? "#" + id : ""), { role: "alert" }, e.message || String(e));

  // ---- router ------------------------------------------------------------------------------
  let routeSeq = 0; // bumped on every navigation: stale async renders and timers stop
  let timers = [];
  function go(hash) { if (location.hash !== hash) location.hash = hash; else render(); }
  function stopTimers() { timers.forEach(clearTimeout); timers = []; }
  /** Calls fn every `ms` (after each run completes) until it returns false or the route changes. */
  function poll(seq, ms, fn) {
    const tick = async () => {
      if (seq !== routeSeq) return;
      let again = false;
      try { again = await fn(); } catch (e) { showError(e.message); again = true; }
      if (again && seq === routeSeq) timers.push(setTimeout(tick, ms));
    };
    timers.push(setTimeout(tick, ms));
  }

  const routes = [
    [/^#\/login$/, "login", pageLogin],
    [/^#\/projects$/, "projects", pageProjects],
    [/^#\/projects\/([^/]+)$/, "project", pageProject],
    [/^#\/models\/([^/]+)\/([^/]+)$/, "model", pageModel],
    [/^#\/cubes\/([^/]+)$/, "cube", pageCube],
    [/^#\/jobs$/, "jobs", pageJobs],
    [/^#\/jobs\/([^/]+)$/, "job", pageJob],
    [/^#\/query$/, "query", pageQuery],
    [/^#\/system$/, "system", pageSystem],
    [/^#\/access$/, "access", pageAccess],
    [/^#\/audit$/, "audit", pageAudit],
  ];

  async function render() {
    stopTimers();
    const seq = ++routeSeq;
    let hash = location.hash || "#/projects";
    if (!S.token && hash !== "#/login") {
      sessionStorage.setItem("qilin.after_login", hash);
      hash = "#/login";
      history.replaceState(null, "", hash);
    }
    const signedIn = !!S.token;
    $("#nav").hidden = !signedIn;
    $("#user-box").hidden = !signedIn;
    $("#user-name").textContent = S.user;
    $("#nav-access").hidden = !(signedIn && S.grantsAnywhere);
    $("#nav-audit").hidden = !(signedIn && S.admin);
    const section = /^#\/(projects|models|cubes)/.test(hash) ? "#/projects" : hash.replace(/^(#\/[a-z]+?)s?(\/.*)?$/, "$1");
    document.querySelectorAll("#nav a").forEach((a) => {
      a.classList.toggle("active", a.getAttribute("href").replace(/s$/, "") === section.replace(/s$/, ""));
    });
    const page = $("#page");
    let found = routes.find(([re]) => re.test(hash));
    page.replaceChildren();
    page.removeAttribute("data-ready");
    if (!found) {
      page.dataset.page = "notfound";
      page.append(h("div.error", null, "No such page: " + hash), h("a", { href: "#/projects" }, "Projects"));
      return;
    }
    const [re, name, fn] = found;
    page.dataset.page = name;
    const args = re.exec(hash).slice(1).map(decodeURIComponent);
    try {
      await fn(page, seq, ...args);
      if (seq === routeSeq) page.dataset.ready = "1";
    } catch (e) {
      if (seq !== routeSeq) return;
      page.append(e.status === 403
        ? h("div#forbidden.error", { role: "alert" }, "You may not see this page. ", e.message)
        : errorBox(e));
      page.dataset.ready = "error";
    }
  }
  const current = (seq) => seq === routeSeq;

  // ---- sign-in -----------------------------------------------------------------------------
  async function pageLogin(page) {
    const user = h("input#login-user", { name: "username", autocomplete: "username", required: true, autofocus: true });
    const pass = h("input#login-password", { type: "password", name: "password", autocomplete: "current-password" });
    const err = h("div#login-error.error", { hidden: !pendingMessage }, pendingMessage || "");
    pendingMessage = null;
    const submit = h("button#login-submit.primary", { type: "submit" }, "Sign in");
    const form = h("form#login-form", {
      onsubmit: async (ev) => {
        ev.preventDefault();
        err.hidden = true;
        submit.disabled = true;
        try {
          const name = user.value.trim();
          const r = await api("POST", "/kylin/api/user/authentication", undefined,
            "Basic " + base64Utf8(name + ":" + pass.value));
          if (!r || !r.token) throw new Error("The server answered without a token");
          const who = (r.userDetails && r.userDetails.username) || name;
          S.save(who, r.token, r.can_operate, r.admin, r.projects);
          clearError();
          const next = sessionStorage.getItem("qilin.after_login") || "#/projects";
          sessionStorage.removeItem("qilin.after_login");
          go(next === "#/login" ? "#/projects" : next);
        } catch (e) {
          err.textContent = e.status === 401 ? "Wrong user name or password." : e.message;
          err.hidden = false;
        } finally {
          submit.disabled = false;
        }
      },
    },
    h("label", { for: "login-user" }, "User"), user,
    h("label", { for: "login-password" }, "Password"), pass, submit, err);
    page.append(h("div.login.panel", null, h("h1", null, "Sign in to Qilin"), form,
      h("p.muted", null, "The same users as Flight SQL; an API key works as the password.")));
    user.focus();
  }

  // ---- projects ----------------------------------------------------------------------------
  async function pageProjects(page, seq) {
    page.append(h("h1", null, "Projects"));
    const projects = await api("GET", "/kylin/api/projects");
    if (!current(seq)) return;
    const list = h("div#project-list.cards");
    if (!projects.length) list.append(h("p.muted", null, "No projects yet."));
    for (const p of projects) {
      const cubes = (p.realizations || []).filter((r) => r.type === "CUBE").map((r) => r.realization);
      list.append(h("div.panel.project-card", { "data-project": p.name },
        h("h2", null, h("a.project-link", { href: "#/projects/" + encodeURIComponent(p.name), "data-project": p.name }, p.name)),
        p.description ? h("p.muted", null, p.description) : null,
        h("dl.kv", null,
          h("dt", null, "Tables"), h("dd", null, (p.tables || []).join(", ") || "—"),
          h("dt", null, "Models"), h("dd", null, joinLinks((p.models || []), (m) => "#/models/" + encodeURIComponent(p.name) + "/" + encodeURIComponent(m), "model-link", "model")),
          h("dt", null, "Cubes"), h("dd", null, joinLinks(cubes, (c) => "#/cubes/" + encodeURIComponent(c), "cube-link", "cube")))));
    }
    page.append(list);
  }
  function joinLinks(names, href, cls, key) {
    if (!names.length) return "—";
    const out = [];
    names.forEach((n, i) => {
      if (i) out.push(", ");
      out.push(h("a." + cls, { href: href(n), ["data-" + key]: n }, n));
    });
    return out;
  }

  async function pageProject(page, seq, project) {
    page.append(h("div.crumbs", null, h("a", { href: "#/projects" }, "Projects"), " / ", project),
      h("h1", null, "Project " + project));
    const q = encodeURIComponent(project);
    const [tables, models, cubes] = await Promise.all([
      api("GET", "/kylin/api/tables_and_columns?project=" + q),
      api("GET", "/kylin/api/models?projectName=" + q),
      api("GET", "/kylin/api/cubes?projectName=" + q),
    ]);
    if (!current(seq)) return;
    page.append(h("h2", null, "Cubes"), h("div#cubes", null, cubes.length ? table("cubes", ["Cube", "Model", "Status", "Segments", "Cuboids", "Size", "Source rows"],
      cubes.map((c) => h("tr", null,
        h("td", null, h("a.cube-link", { href: "#/cubes/" + encodeURIComponent(c.name), "data-cube": c.name }, c.name)),
        h("td", null, c.model), h("td", null, badge(c.status)),
        h("td.num", null, (c.segments || []).length), h("td.num", null, fmtInt(c.cuboid_count)),
        h("td.num", null, fmtBytes((c.size_kb || 0) * 1024)), h("td.num", null, fmtInt(c.input_records_count))))) : h("p.muted", null, "No cubes.")));
    page.append(h("h2", null, "Models"), h("div#models", null, models.length ? h("ul", null, models.map((m) => h("li", null,
      h("a.model-link", { href: "#/models/" + q + "/" + encodeURIComponent(m.name), "data-model": m.name }, m.name),
      h("span.muted", null, " — fact table " + m.fact_table + ", " + (m.lookups || []).length + " lookups")))) : h("p.muted", null, "No models.")));
    const cards = h("div#tables.cards");
    for (const t of tables) {
      cards.append(h("div.panel.table-card", { "data-table": t.table_NAME },
        h("h3", null, t.table_NAME, h("span.muted", null, " " + (t.table_TYPE || ""))),
        t.remarks ? h("p.muted", null, t.remarks) : null,
        table("columns", ["#", "Column", "Type", "Nullable"], (t.columns || [])
          .slice().sort((a, b) => a.ordinal_POSITION - b.ordinal_POSITION)
          .map((c) => h("tr.column-row", { "data-column": c.column_NAME },
            h("td.num", null, c.ordinal_POSITION), h("td.mono", null, c.column_NAME),
            h("td", null, typeText(c)), h("td", null, c.is_NULLABLE || (c.nullable ? "YES" : "NO")))))));
    }
    page.append(h("h2", null, "Tables"), tables.length ? cards : h("p.muted", null, "No tables."));
  }
  function typeText(c) {
    const t = c.type_NAME || String(c.data_TYPE);
    if (t === "DECIMAL" && c.column_SIZE) return t + "(" + c.column_SIZE + "," + (c.decimal_DIGITS || 0) + ")";
    if (t === "VARCHAR" && c.column_SIZE && c.column_SIZE < 65536) return t + "(" + c.column_SIZE + ")";
    return t;
  }

  // ---- model diagram -----------------------------------------------------------------------
  async function pageModel(page, seq, project, name) {
    page.append(h("div.crumbs", null, h("a", { href: "#/projects" }, "Projects"), " / ",
      h("a", { href: "#/projects/" + encodeURIComponent(project) }, project), " / model"),
      h("h1", null, "Model " + name));
    const [models, tables] = await Promise.all([
      api("GET", "/kylin/api/models?projectName=" + encodeURIComponent(project)),
      api("GET", "/kylin/api/tables_and_columns?project=" + encodeURIComponent(project)).catch(() => []),
    ]);
    if (!current(seq)) return;
    const model = models.find((m) => m.name === name);
    if (!model) throw new Error("Model " + name + " is not in project " + project);
    page.append(h("div.panel", null, modelDiagram(model, tables)));
    const info = h("dl.kv", null,
      h("dt", null, "Fact table"), h("dd.mono", null, model.fact_table),
      h("dt", null, "Partition column"), h("dd.mono", null, model.partition ? model.partition.column + (model.partition.format ? " (" + model.partition.format + ")" : "") : "none (full builds)"),
      model.filter_condition ? [h("dt", null, "Filter"), h("dd.mono", null, model.filter_condition)] : null);
    page.append(h("div.panel", null, info));
    page.append(h("h2", null, "Joins"), table("joins", ["Lookup", "Join", "Foreign key", "Primary key"],
      (model.lookups || []).map((l) => h("tr", null, h("td.mono", null, lookupName(l) + (l.alias ? " (" + l.table + ")" : "")),
        h("td", null, String(l.join || "").toUpperCase()), h("td.mono", null, (l.foreign_key || []).join(", ")),
        h("td.mono", null, (l.primary_key || []).join(", "))))));
    if ((model.computed_columns || []).length) {
      page.append(h("h2", null, "Computed columns"), table("computed", ["Name", "Expression", "Type"],
        model.computed_columns.map((c) => h("tr", null, h("td.mono", null, c.name), h("td.mono", null, c.expression), h("td", null, c.data_type)))));
    }
  }
  const lookupName = (l) => l.alias || l.table;

  /** The fact table on the left, lookups stacked on the right; a line per join labelled with
   * its keys. Boxes list the key columns (and, when known, the column count). */
  function modelDiagram(model, tables) {
    const lookups = model.lookups || [];
    const colCount = (t) => {
      const m = (tables || []).find((x) => String(x.table_NAME).toLowerCase() === String(t).toLowerCase());
      return m ? (m.columns || []).length : null;
    };
    const boxW = 220, headH = 24, lineH = 16, gapY = 26;
    const bare = (k) => String(k).split(".").pop();
    const lookupBoxes = lookups.map((l) => {
      const rows = (l.primary_key || []).map((k) => "PK " + bare(k));
      return { name: lookupName(l), table: l.table, rows, h: headH + 10 + Math.max(1, rows.length) * lineH, lookup: l };
    });
    const factRows = lookups.flatMap((l) => (l.foreign_key || []).map((k) => "FK " + bare(k)));
    const factH = headH + 10 + Math.max(1, factRows.length) * lineH;
    const rightH = lookupBoxes.reduce((a, b) => a + b.h, 0) + gapY * Math.max(0, lookupBoxes.length - 1);
    const height = Math.max(factH, rightH) + 40;
    const width = 2 * boxW + 320;
    const svg = s("svg", { id: "model-diagram", class: "diagram", width, height, viewBox: "0 0 " + width + " " + height, role: "img", "aria-label": "Model " + model.name });
    const factX = 20, factY = (height - factH) / 2;
    const rightX = width - boxW - 20;
    let y = (height - rightH) / 2;
    const drawBox = (x, by, bh, title, sub, rows, cls, key) => {
      const g = s("g", { class: "diagram-table" + (cls ? " " + cls : ""), "data-table": key, transform: "translate(" + x + "," + by + ")" });
      g.append(s("rect", { width: boxW, height: bh, rx: 5 }), s("rect", { class: "head", width: boxW, height: headH, rx: 5 }),
        s("text", { x: 8, y: 16, "font-weight": "600" }, title + (sub ? "  " : ""), sub ? s("tspan", { fill: "#656d76" }, sub) : null));
      rows.forEach((r, i) => g.append(s("text", { x: 10, y: headH + 16 + i * lineH, class: "mono" }, r)));
      return g;
    };
    const n = colCount(model.fact_table);
    // Lines first, so boxes are drawn over their ends.
    const lines = [], boxes = [];
    boxes.push(drawBox(factX, factY, factH, model.fact_table, "FACT" + (n ? " · " + n + " cols" : ""), factRows, "fact", model.fact_table));
    let fkIndex = 0;
    for (const b of lookupBoxes) {
      const l = b.lookup;
      const fkRow = fkIndex;
      fkIndex += Math.max(1, (l.foreign_key || []).length);
      const x1 = factX + boxW, y1 = factY + headH + 12 + fkRow * lineH;
      const x2 = rightX, y2 = y + b.h / 2;
      lines.push(s("line", { class: "diagram-join", "data-lookup": b.name, x1, y1, x2, y2 }));
      const keys = (l.foreign_key || []).map((fk, i) => bare(fk) + " = " + bare((l.primary_key || [])[i] || "?")).join(", ");
      const mx = (x1 + x2) / 2, my = (y1 + y2) / 2 - 4;
      lines.push(s("text", { class: "join-label", x: mx, y: my, "text-anchor": "middle" }, String(l.join || "").toUpperCase() + " " + keys));
      const lc = colCount(b.table);
      boxes.push(drawBox(rightX, y, b.h, b.name, "LOOKUP" + (lc ? " · " + lc + " cols" : ""), b.rows, "lookup", b.name));
      y += b.h + gapY;
    }
    svg.append(...lines, ...boxes);
    return svg;
  }

  // ---- cube --------------------------------------------------------------------------------
  async function pageCube(page, seq, cube) {
    const crumbs = h("div.crumbs", null, h("a", { href: "#/projects" }, "Projects"), " / cube");
    const title = h("h1", null, "Cube " + cube);
    page.append(crumbs, title);
    const [inst, descs] = await Promise.all([
      api("GET", "/kylin/api/cubes/" + encodeURIComponent(cube)),
      api("GET", "/kylin/api/cube_desc/" + encodeURIComponent(cube)),
    ]);
    if (!current(seq)) return;
    const desc = Array.isArray(descs) ? descs[0] : descs;
    crumbs.replaceChildren(h("a", { href: "#/projects" }, "Projects"), " / ",
      h("a", { href: "#/projects/" + encodeURIComponent(inst.project) }, inst.project), " / ",
      h("a", { href: "#/models/" + encodeURIComponent(inst.project) + "/" + encodeURIComponent(inst.model) }, "model " + inst.model), " / cube");
    const summary = h("div#cube-summary.panel", null, h("dl.kv", null,
      h("dt", null, "Status"), h("dd#cube-status", { "data-status": inst.status }, badge(inst.status)),
      h("dt", null, "Model"), h("dd", null, h("a", { href: "#/models/" + encodeURIComponent(inst.project) + "/" + encodeURIComponent(inst.model) }, inst.model)),
      h("dt", null, "Cuboids"), h("dd#cube-cuboids", null, fmtInt(desc && desc.cuboid_count !== undefined ? desc.cuboid_count : inst.cuboid_count)),
      h("dt", null, "Size"), h("dd#cube-size", null, fmtBytes((inst.size_kb || 0) * 1024)),
      h("dt", null, "Source rows"), h("dd", null, fmtInt(inst.input_records_count)),
      h("dt", null, "Created"), h("dd", null, fmtTime(inst.create_time_utc))));
    page.append(summary);

    const segBox = h("div#segments-box", null, segmentsTable(inst.segments || []));
    page.append(h("h2", null, "Segments"), segBox);
    if (S.canOperate) page.append(buildForm(cube, inst));
    const jobsBox = h("div#cube-jobs");
    page.append(h("h2", null, "Recent jobs of this cube ", h("a", { href: "#/jobs" }, "(Monitor)")), jobsBox);
    let wasActive = false;
    const refreshJobs = async () => {
      const jobs = await api("GET", "/kylin/api/jobs?cubeName=" + encodeURIComponent(cube) + "&limit=5");
      if (!current(seq)) return false;
      jobsBox.replaceChildren(jobsTable(jobs, () => refreshJobs()));
      const active = jobs.some(isActive);
      if (wasActive && !active) {
        // A job just ended: its segment changed.
        const fresh = await api("GET", "/kylin/api/cubes/" + encodeURIComponent(cube));
        if (current(seq)) segBox.replaceChildren(segmentsTable(fresh.segments || []));
      }
      wasActive = active;
      return active;
    };
    if (await refreshJobs().catch((e) => { jobsBox.replaceChildren(errorBox(e)); return false; })) {
      poll(seq, 1000, refreshJobs);
    }

    if (desc) {
      page.append(h("h2", null, "Dimensions"), h("div#cube-dimensions", null, table("dims", ["Name", "Table", "Column", "Derived"],
        (desc.dimensions || []).map((d) => h("tr", null, h("td", null, d.name || d.column || ""), h("td.mono", null, d.table || ""),
          h("td.mono", null, d.column || ""), h("td.mono", null, (d.derived || []).join(", ")))))));
      page.append(h("h2", null, "Measures"), h("div#cube-measures", null, table("measures", ["Name", "Function", "Column"],
        (desc.measures || []).map((m) => h("tr", null, h("td", null, m.name), h("td", null, m.function),
          h("td.mono", null, (m.column || "*") + (m.distinct ? " (" + m.distinct + ")" : "")))))));
      page.append(h("h2", null, "Aggregation groups"), h("div#cube-aggs", null, (desc.aggregation_groups || []).map((g, i) =>
        h("div.panel.agg-group", null, h("h3", null, "Group " + (i + 1)), h("dl.kv", null,
          h("dt", null, "Includes"), h("dd.mono", null, (g.includes || []).join(", ")),
          h("dt", null, "Mandatory"), h("dd.mono", null, (g.mandatory || []).join(", ") || "—"),
          h("dt", null, "Hierarchies"), h("dd.mono", null, (g.hierarchies || []).map((x) => "[" + x.join(" > ") + "]").join(" ") || "—"),
          h("dt", null, "Joints"), h("dd.mono", null, (g.joints || []).map((x) => "[" + x.join(", ") + "]").join(" ") || "—"))))));
      const extra = [];
      if ((desc.rowkey || []).length) extra.push(h("dt", null, "Rowkey"), h("dd.mono", null, desc.rowkey.join(", ")));
      if (desc.table_index) extra.push(h("dt", null, "Table index"), h("dd.mono", null, (desc.table_index.columns || []).join(", ") || "all columns"));
      if ((desc.auto_merge_time_ranges || []).length) extra.push(h("dt", null, "Auto-merge"), h("dd", null, desc.auto_merge_time_ranges.join(", ") + " days"));
      if (desc.retention_range_days) extra.push(h("dt", null, "Retention"), h("dd", null, desc.retention_range_days + " days"));
      if (extra.length) page.append(h("h2", null, "Storage"), h("div.panel", null, h("dl.kv", null, extra)));
    }
  }

  function segmentsTable(segments) {
    if (!segments.length) return h("p#segments.muted", null, "No segments: build a range.");
    return table("segments", ["Segment", "Range (UTC)", "Status", "Source rows", "Cuboid rows", "Size", "Built", "Build time", "Job"],
      segments.map((g) => h("tr.segment-row", { "data-status": g.status, "data-start": String(g.date_range_start || 0), "data-end": String(g.date_range_end || 0), "data-name": g.name },
        h("td.mono", null, g.name, g.stale ? h("span.badge.status-STOPPED", { title: "built from older source data" }, " stale") : null),
        h("td.seg-range", null, g.date_range_end ? fmtDate(g.date_range_start) + " → " + fmtDate(g.date_range_end) : "full build"),
        h("td.seg-status", null, badge(g.status)),
        h("td.num", null, fmtInt(g.input_records)), h("td.num", null, fmtInt(g.cuboid_rows)),
        h("td.num", { title: fmtInt(g.size_bytes) + " bytes" }, fmtBytes(g.size_bytes !== undefined ? g.size_bytes : (g.size_kb || 0) * 1024)),
        h("td", null, fmtTime(g.last_build_time)), h("td.num", null, g.build_duration_ms ? fmtSeconds(g.build_duration_ms / 1000) : ""),
        h("td", null, g.last_build_job_id ? h("a", { href: "#/jobs/" + encodeURIComponent(g.last_build_job_id) }, "job") : ""))),
      { id: "segments" });
  }

  function buildForm(cube, inst) {
    const segs = (inst.segments || []).filter((g) => g.date_range_end);
    const lastEnd = segs.reduce((m, g) => Math.max(m, Number(g.date_range_end) || 0), 0);
    const start = h("input#build-start", { placeholder: "YYYY-MM-DD", size: 11, value: lastEnd ? fmtDate(lastEnd) : "" });
    const end = h("input#build-end", { placeholder: "YYYY-MM-DD", size: 11 });
    const type = h("select#build-type", null, ["BUILD", "MERGE", "REFRESH"].map((t) => h("option", { value: t }, t)));
    const msg = h("div#build-message");
    const submit = h("button#build-submit.primary", { type: "submit" }, "Build");
    const form = h("form#build-form.inline", {
      onsubmit: async (ev) => {
        ev.preventDefault();
        msg.replaceChildren();
        const s0 = parseDay(start.value), e0 = parseDay(end.value);
        if (s0 === null || e0 === null) { msg.append(h("div.error", null, "Dates must be valid days written YYYY-MM-DD.")); return; }
        if (e0 <= s0) { msg.append(h("div.error", null, "The end must be after the start.")); return; }
        submit.disabled = true;
        try {
          const job = await api("PUT", "/kylin/api/cubes/" + encodeURIComponent(cube) + "/rebuild",
            { startTime: s0, endTime: e0, buildType: type.value });
          go("#/jobs/" + encodeURIComponent(job.uuid));
        } catch (e) {
          msg.append(errorBox(e));
        } finally {
          submit.disabled = false;
        }
      },
    }, h("label", { for: "build-start" }, "From"), start, h("label", { for: "build-end" }, "to (exclusive)"), end,
    h("label", { for: "build-type" }, "Type"), type, submit);
    return h("div.panel", null, h("h2", null, "Build a range"), form,
      h("p.muted", null, "Dates are UTC days; the range is [from, to). MERGE joins the READY segments inside it; REFRESH rebuilds it."), msg);
  }

  // ---- jobs --------------------------------------------------------------------------------
  const ACTIVE = ["PENDING", "RUNNING"];
  const isActive = (j) => ACTIVE.includes(j.job_status);
  function jobDuration(j) {
    if (j.duration) return fmtSeconds(j.duration);
    if (j.exec_start_time && isActive(j)) return fmtSeconds((Date.now() - j.exec_start_time) / 1000);
    return "";
  }
  function jobButtons(j, after) {
    if (!S.canOperate) return null;
    const out = [];
    const act = (verb, label, cls) => h("button.job-" + cls + (cls === "discard" ? ".danger" : ""), {
      type: "button", "data-job": j.uuid,
      onclick: async (ev) => {
        ev.target.disabled = true;
        try {
          if (cls === "discard" && !confirm("Discard job " + j.name + "?")) return;
          await api("PUT", "/kylin/api/jobs/" + encodeURIComponent(j.uuid) + "/" + verb);
          clearError();
        } catch (e) { showError(e.message); } finally { ev.target.disabled = false; after(); }
      },
    }, label);
    if (j.resumable || ["ERROR", "STOPPED"].includes(j.job_status)) out.push(act("resume", "Resume", "resume"));
    if (!["FINISHED", "DISCARDED"].includes(j.job_status)) out.push(act("cancel", "Discard", "discard"));
    return out;
  }
  function jobsTable(jobs, after, id) {
    if (!jobs.length) return h("p.muted.jobs-empty", null, "No jobs.");
    return table("jobs", ["Job", "Cube", "Type", "Status", "Progress", "Started", "Duration", "Submitter", ""],
      jobs.map((j) => [
        h("tr.job-row", { "data-job": j.uuid, "data-status": j.job_status },
          h("td", null, h("a.job-link", { href: "#/jobs/" + encodeURIComponent(j.uuid) }, j.name || j.uuid)),
          h("td", null, j.related_cube ? h("a", { href: "#/cubes/" + encodeURIComponent(j.related_cube) }, j.related_cube) : ""),
          h("td", null, j.type), h("td.job-status", null, badge(j.job_status)),
          h("td", null, progressBar(null, j.progress, j.job_status)),
          h("td", null, fmtTime(j.exec_start_time)), h("td.num", null, jobDuration(j)),
          h("td", null, j.submitter || ""), h("td", null, jobButtons(j, after))),
        j.error ? h("tr.job-error-row", null, h("td.job-error.error", { colspan: 9 }, j.error)) : null,
      ]), id ? { id } : null);
  }

  async function pageJobs(page, seq) {
    page.append(h("h1", null, "Monitor"));
    const status = h("select#jobs-status", { onchange: () => refresh() },
      ["", "PENDING", "RUNNING", "FINISHED", "ERROR", "STOPPED", "DISCARDED"].map((v) => h("option", { value: v }, v || "all statuses")));
    const cube = h("input#jobs-cube", { placeholder: "cube", size: 14, onchange: () => refresh() });
    const state = h("span#jobs-refresh.muted");
    const box = h("div#jobs-box");
    page.append(h("div.toolbar", null, h("label", null, "Status"), status, h("label", null, "Cube"), cube,
      h("button#jobs-reload", { type: "button", onclick: () => refresh() }, "Refresh"), state), box);
    let polling = false;
    const load = async () => {
      const q = new URLSearchParams({ limit: "50" });
      if (status.value) q.set("status", status.value);
      if (cube.value.trim()) q.set("cubeName", cube.value.trim());
      const jobs = await api("GET", "/kylin/api/jobs?" + q);
      if (!current(seq)) return false;
      box.replaceChildren(jobsTable(jobs, () => refresh(), "jobs-table"));
      const active = jobs.some(isActive);
      state.textContent = active ? "auto-refreshing every second while a job runs" : "";
      state.dataset.active = active ? "1" : "0";
      return active;
    };
    const refresh = async () => {
      try {
        const active = await load();
        if (active && !polling) {
          polling = true;
          poll(seq, 1000, async () => { const a = await load(); if (!a) polling = false; return a; });
        }
      } catch (e) { box.replaceChildren(errorBox(e)); }
    };
    await refresh();
  }

  async function pageJob(page, seq, id) {
    page.append(h("div.crumbs", null, h("a", { href: "#/jobs" }, "Monitor"), " / job"));
    const box = h("div#job-detail");
    page.append(box);
    const load = async () => {
      const j = await api("GET", "/kylin/api/jobs/" + encodeURIComponent(id));
      if (!current(seq)) return false;
      box.dataset.job = j.uuid;
      box.dataset.status = j.job_status;
      box.replaceChildren(
        h("h1", null, j.name || j.uuid, " ", badge(j.job_status)),
        h("div.panel", null, h("dl.kv", null,
          h("dt", null, "Progress"), h("dd", null, progressBar("job-progress", j.progress, j.job_status)),
          h("dt", null, "Cube"), h("dd", null, j.related_cube ? h("a#job-cube", { href: "#/cubes/" + encodeURIComponent(j.related_cube) }, j.related_cube) : ""),
          h("dt", null, "Type"), h("dd", null, j.type),
          h("dt", null, "Segment"), h("dd.mono", null, j.related_segment || ""),
          h("dt", null, "Started"), h("dd", null, fmtTime(j.exec_start_time)),
          h("dt", null, "Ended"), h("dd", null, fmtTime(j.exec_end_time)),
          h("dt", null, "Duration"), h("dd#job-duration", null, jobDuration(j)),
          h("dt", null, "Submitter"), h("dd", null, j.submitter || ""),
          j.attempts > 1 ? [h("dt", null, "Attempt"), h("dd", null, String(j.attempts))] : null,
          j.message ? [h("dt", null, "Message"), h("dd", null, j.message)] : null),
          h("div.toolbar", null, jobButtons(j, () => load().catch((e) => showError(e.message))))),
        j.error ? h("div#job-error.error", null, j.error) : null,
        h("h2", null, "Steps"),
        table("steps", ["#", "Step", "Status", "Info"], (j.steps || []).map((st) =>
          h("tr.step-row", { "data-status": st.step_status },
            h("td.num", null, st.sequence_id), h("td", null, st.name), h("td", null, badge(st.step_status)),
            h("td", null, st.info || ""))), { id: "job-steps" }));
      return isActive(j);
    };
    if (await load()) poll(seq, 1000, load);
  }

  // ---- query -------------------------------------------------------------------------------
  const historyKey = () => "qilin.query-history." + S.user;
  function loadHistory() {
    try { return JSON.parse(localStorage.getItem(historyKey()) || "[]"); } catch (_) { return []; }
  }
  function pushHistory(item) {
    const list = loadHistory().filter((x) => !(x.sql === item.sql && x.project === item.project));
    list.unshift(item);
    localStorage.setItem(historyKey(), JSON.stringify(list.slice(0, 50)));
  }
  const NUMERIC_TYPES = ["TINYINT", "SMALLINT", "INTEGER", "INT", "BIGINT", "REAL", "FLOAT", "DOUBLE", "DECIMAL", "NUMERIC"];
  const NUMERIC_CODES = [-6, 5, 4, -5, 7, 6, 8, 3, 2];
  const isNumeric = (m) => NUMERIC_TYPES.includes(String(m.columnTypeName || "").toUpperCase().replace(/\(.*$/, "")) || NUMERIC_CODES.includes(m.columnType);
  const colLabel = (m) => m.label || m.name;

  let lastQuery = null; // what the Query page shows when revisited
  async function pageQuery(page, seq) {
    page.append(h("h1", null, "Insight"));
    const projects = await api("GET", "/kylin/api/projects").catch((e) => { page.append(errorBox(e)); return []; });
    if (!current(seq)) return;
    const project = h("select#query-project", null, projects.map((p) => h("option", { value: p.name }, p.name)));
    const saved = sessionStorage.getItem("qilin.query-project");
    if (saved && projects.some((p) => p.name === saved)) project.value = saved;
    project.addEventListener("change", () => sessionStorage.setItem("qilin.query-project", project.value));
    const sql = h("textarea#query-sql", { spellcheck: "false", placeholder: "SELECT … FROM …  (Ctrl+Enter runs)" });
    const limit = h("input#query-limit", { type: "number", min: "1", value: "50000", size: 7 });
    const run = h("button#query-run.primary", { type: "button" }, "Run");
    const status = h("span#query-status.muted");
    const out = h("div#query-output");
    const historyList = h("ul#query-history");
    const drawHistory = () => {
      const items = loadHistory();
      historyList.replaceChildren(...(items.length ? items.map((it) => h("li.history-item", {
        title: it.sql, "data-sql": it.sql,
        onclick: () => { sql.value = it.sql; if (projects.some((p) => p.name === it.project)) project.value = it.project; sql.focus(); },
      }, h("span.sql.mono", null, it.sql), h("span.muted", null, (it.ok ? (it.rows + " rows, " + it.ms + " ms") : "failed") + " · " + it.project + " · " + fmtTime(it.at))))
        : [h("li.muted", null, "Queries you run appear here.")]));
    };
    sql.addEventListener("keydown", (ev) => { if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); run.click(); } });
    run.addEventListener("click", async () => {
      const text = sql.value.trim().replace(/;\s*$/, "");
      if (!text) { out.replaceChildren(h("div#query-error.error", null, "Write a SQL statement first.")); return; }
      run.disabled = true;
      status.textContent = "Running…";
      status.dataset.state = "running";
      out.replaceChildren();
      const body = { sql: text, project: project.value || undefined, offset: 0, acceptPartial: false };
      const lim = parseInt(limit.value, 10);
      if (lim > 0) body.limit = lim;
      const started = performance.now();
      try {
        const r = await api("POST", "/kylin/api/query", body);
        const wall = Math.round(performance.now() - started);
        if (r.isException) {
          pushHistory({ sql: text, project: project.value, at: Date.now(), ok: false });
          status.textContent = "Failed";
          status.dataset.state = "error";
          out.replaceChildren(h("div#query-error.error", null, r.exceptionMessage || "The query failed"));
        } else {
          let explain = null;
          if (!/^explain\b/i.test(text)) {
            explain = await api("POST", "/kylin/api/query", { sql: "EXPLAIN " + text, project: body.project })
              .catch((e) => ({ isException: true, exceptionMessage: e.message }));
          }
          lastQuery = { r, explain, wall, project: project.value };
          pushHistory({ sql: text, project: project.value, at: Date.now(), ok: true, rows: (r.results || []).length, ms: r.duration });
          status.textContent = "Done";
          status.dataset.state = "done";
          showResult(out, lastQuery);
        }
      } catch (e) {
        status.textContent = "Failed";
        status.dataset.state = "error";
        out.replaceChildren(h("div#query-error.error", null, e.message));
      } finally {
        run.disabled = false;
        drawHistory();
      }
    });
    drawHistory();
    page.append(h("div.split", null,
      h("div", null,
        h("div.toolbar", null, h("label", { for: "query-project" }, "Project"), project,
          h("label", { for: "query-limit" }, "Limit"), limit, run, status),
        sql, out),
      h("div.panel", null, h("h3", null, "History (" + S.user + ")"), historyList,
        h("button#query-history-clear", { type: "button", onclick: () => { localStorage.removeItem(historyKey()); drawHistory(); } }, "Clear history"))));
    if (lastQuery) { sql.value = sessionStorage.getItem("qilin.query-sql") || ""; showResult(out, lastQuery); }
    sql.addEventListener("input", () => sessionStorage.setItem("qilin.query-sql", sql.value));
  }

  function showResult(out, q) {
    const { r, explain, wall } = q;
    const metas = r.columnMetas || [];
    const rows = r.results || [];
    out.replaceChildren(
      h("div.toolbar", null,
        h("span", null, "Answered by ", h("b#query-cube", null, r.cube || (r.pushDown ? "pushdown (source tables)" : "no cube"))),
        h("span", null, "in ", h("b#query-duration", { "data-ms": String(r.duration) }, fmtInt(r.duration) + " ms"),
          h("span.muted", null, " (" + wall + " ms in the browser)")),
        h("span#query-rowcount", { "data-rows": String(rows.length) }, fmtInt(rows.length) + " rows"),
        r.totalScanCount !== undefined ? h("span.muted", null, "scanned " + fmtInt(r.totalScanCount) + " rows") : null,
        h("button#query-csv", { type: "button", onclick: () => downloadCsv(metas, rows) }, "Download CSV")));
    if (r.fallback) {
      out.append(h("div#query-fallback.warning", { "data-chosen": String(r.fallback.chosen) },
        h("b", null, "Fallback: "), "this query read a much larger cuboid than it needed — " + r.fallback.text +
        ". A cuboid over its dimensions (qilin-jobs cube optimize) would answer it from fewer rows."));
    }
    if (explain) out.append(explainBox(explain));
    out.append(h("h2", null, "Results"), h("div.scroll", null, table("results", metas.map(colLabel),
      rows.map((row) => h("tr.result-row", null, row.map((v, i) => h("td" + (metas[i] && isNumeric(metas[i]) ? ".num" : ""), null, v === null ? h("span.muted", null, "NULL") : v)))),
      { id: "query-results", "data-rows": String(rows.length) })));
    out.append(chartBox(metas, rows));
  }

  function explainBox(ex) {
    if (ex.isException) return h("div.panel", null, h("h2", null, "EXPLAIN"), h("div.error#query-explain-error", null, ex.exceptionMessage || "EXPLAIN failed"));
    const metas = ex.columnMetas || [];
    let ti = metas.findIndex((m) => /plan_type/i.test(colLabel(m)));
    let pi = metas.findIndex((m) => /^plan$/i.test(colLabel(m)));
    if (ti < 0) ti = 0;
    if (pi < 0) pi = Math.min(1, metas.length - 1);
    const rows = (ex.results || []).map((r) => [r[ti], r[pi]]);
    const summaryKinds = ["realization", "cuboid", "fallback", "top_n", "segments", "blocks", "derived", "extended"];
    const summary = rows.filter(([t]) => summaryKinds.includes(String(t).toLowerCase()));
    const plans = rows.filter(([t]) => !summaryKinds.includes(String(t).toLowerCase()));
    return h("div.panel#query-explain-box", null, h("h2", null, "EXPLAIN"),
      table("explain-summary", [], summary.map(([t, p]) => h("tr.explain-row", { "data-type": String(t).toLowerCase() },
        h("td", null, t), h("td.mono", null, p))), { id: "query-explain" }),
      plans.length ? h("details", null, h("summary", null, "Plans (" + plans.map(([t]) => t).join(", ") + ")"),
        plans.map(([t, p]) => [h("h3", null, t), h("pre.plan", null, p)])) : null);
  }

  function downloadCsv(metas, rows) {
    const q = (v) => {
      if (v === null || v === undefined) return "";
      const t = String(v);
      return /[",\r\n]/.test(t) ? '"' + t.replace(/"/g, '""') + '"' : t;
    };
    const text = [metas.map((m) => q(colLabel(m))).join(",")].concat(rows.map((r) => r.map(q).join(","))).join("\r\n") + "\r\n";
    const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
    const a = h("a", { href: url, download: "qilin-query.csv" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  function chartBox(metas, rows) {
    const box = h("div.panel#query-chart-box");
    const numeric = metas.map((m, i) => i).filter((i) => isNumeric(metas[i]));
    box.append(h("h2", null, "Chart"));
    if (!rows.length || !numeric.length) {
      box.append(h("p.muted#query-chart-none", null, rows.length ? "No numeric column to chart." : "No rows to chart."));
      return box;
    }
    const type = h("select#chart-type", null, h("option", { value: "bar" }, "Bar"), h("option", { value: "line" }, "Line"));
    const label = h("select#chart-label", null, metas.map((m, i) => h("option", { value: String(i) }, colLabel(m))));
    const value = h("select#chart-value", null, numeric.map((i) => h("option", { value: String(i) }, colLabel(metas[i]))));
    // Labels: the first column unless it is the only numeric one (then the first text column).
    const firstText = metas.findIndex((m) => !isNumeric(m));
    let li = 0;
    if (isNumeric(metas[0]) && firstText >= 0) li = firstText;
    label.value = String(li);
    value.value = String(numeric.find((i) => i !== li) ?? numeric[0]);
    const holder = h("div#query-chart-holder");
    const draw = () => holder.replaceChildren(drawChart(type.value, rows, +label.value, +value.value, colLabel(metas[+value.value])));
    [type, label, value].forEach((el) => el.addEventListener("change", draw));
    box.append(h("div.toolbar", null, h("label", { for: "chart-type" }, "Chart"), type,
      h("label", { for: "chart-label" }, "Labels"), label, h("label", { for: "chart-value" }, "Values"), value), holder);
    draw();
    return box;
  }

  function niceTicks(min, max, count) {
    if (min === max) { max = min + 1; }
    const span = max - min;
    const step0 = Math.pow(10, Math.floor(Math.log10(span / count)));
    const err = span / count / step0;
    const step = step0 * (err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1);
    const ticks = [];
    for (let v = Math.floor(min / step) * step; v <= max + step * 1e-9; v += step) ticks.push(+v.toPrecision(12));
    if (ticks[ticks.length - 1] < max) ticks.push(ticks[ticks.length - 1] + step);
    return ticks;
  }
  function shortNum(v) {
    const a = Math.abs(v);
    if (a >= 1e12) return (v / 1e12).toFixed(1) + "T";
    if (a >= 1e9) return (v / 1e9).toFixed(1) + "G";
    if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (a >= 1e4) return (v / 1e3).toFixed(0) + "k";
    return String(+v.toPrecision(6));
  }

  /** A bar or line chart of up to 500 rows: labels from column li, values from column vi. */
  function drawChart(kind, rows, li, vi, valueName) {
    const MAX = 500;
    const data = rows.slice(0, MAX).map((r) => ({ label: r[li] === null ? "NULL" : String(r[li]), v: parseFloat(r[vi]) }))
      .filter((d) => Number.isFinite(d.v));
    const W = 960, H = 360, ml = 70, mr = 16, mt = 16, mb = 90;
    const svg = s("svg", { id: "query-chart", class: "chart", width: W, height: H, viewBox: "0 0 " + W + " " + H, "data-kind": kind, "data-points": String(data.length), role: "img", "aria-label": kind + " chart of " + valueName });
    if (!data.length) { svg.append(s("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "No numeric values")); return svg; }
    const lo = Math.min(0, ...data.map((d) => d.v)), hi = Math.max(0, ...data.map((d) => d.v));
    const ticks = niceTicks(lo, hi, 5);
    const y0 = ticks[0], y1 = ticks[ticks.length - 1];
    const pw = W - ml - mr, ph = H - mt - mb;
    const Y = (v) => mt + ph - ((v - y0) / (y1 - y0)) * ph;
    const band = pw / data.length;
    const X = (i) => ml + band * i + band / 2;
    for (const t of ticks) {
      svg.append(s("line", { class: "gridline", x1: ml, x2: W - mr, y1: Y(t), y2: Y(t) }),
        s("text", { class: "tick", x: ml - 6, y: Y(t) + 3, "text-anchor": "end" }, shortNum(t)));
    }
    svg.append(s("line", { class: "axis", x1: ml, x2: ml, y1: mt, y2: mt + ph }),
      s("line", { class: "axis", x1: ml, x2: W - mr, y1: Y(0), y2: Y(0) }));
    const every = Math.max(1, Math.ceil(data.length / 40));
    data.forEach((d, i) => {
      if (i % every) return;
      svg.append(s("text", { class: "tick", x: X(i), y: mt + ph + 10, "text-anchor": "end", transform: "rotate(-50 " + X(i) + " " + (mt + ph + 10) + ")" }, d.label.length > 18 ? d.label.slice(0, 17) + "…" : d.label));
    });
    if (kind === "line") {
      const path = data.map((d, i) => (i ? "L" : "M") + X(i).toFixed(1) + " " + Y(d.v).toFixed(1)).join(" ");
      svg.append(s("path", { class: "chart-line", d: path }));
      if (data.length <= 100) data.forEach((d, i) => svg.append(s("circle", { class: "chart-point", cx: X(i), cy: Y(d.v), r: 2.5 }, s("title", null, d.label + ": " + d.v))));
    } else {
      const bw = Math.max(1, band * 0.8);
      data.forEach((d, i) => {
        const top = Math.min(Y(d.v), Y(0)), hgt = Math.max(0.5, Math.abs(Y(d.v) - Y(0)));
        svg.append(s("rect", { class: "bar", x: X(i) - bw / 2, y: top, width: bw, height: hgt, "data-label": d.label, "data-value": String(d.v) },
          s("title", null, d.label + ": " + d.v)));
      });
    }
    svg.append(s("text", { x: 12, y: mt + ph / 2, transform: "rotate(-90 12 " + (mt + ph / 2) + ")", "text-anchor": "middle", class: "tick" }, valueName),
      rows.length > MAX ? s("text", { x: W - mr, y: mt + 10, "text-anchor": "end", class: "tick" }, "first " + MAX + " of " + rows.length + " rows") : null);
    return svg;
  }

  // ---- system ------------------------------------------------------------------------------
  async function pageSystem(page, seq) {
    page.append(h("h1", null, "System"));
    const sys = await api("GET", "/qilin/api/system");
    if (!current(seq)) return;
    const lease = sys.lease;
    const rows = [
      ["version", "Version", sys.version],
      ["mode", "Server mode", sys.mode],
      ["metadata_version", "Metadata version", sys.metadata_version],
      ["lease_holder", "Job lease holder", lease ? lease.holder : "none (no job daemon holds the lease)"],
      ["lease_expires", "Lease expires", lease && lease.expires_ms ? fmtTime(lease.expires_ms) : ""],
    ];
    page.append(h("div.panel", null, h("dl#system-info.kv", null, rows.map(([k, t, v]) =>
      [h("dt", null, t), h("dd", { "data-key": k }, v === undefined || v === null ? "" : String(v))]))));
    page.append(h("p.muted", null, "Health: ", h("a", { href: "/health" }, "/health"), " · Metrics: ", h("a", { href: "/metrics" }, "/metrics")));
  }

  // ---- access ------------------------------------------------------------------------------
  /** A small form whose submit runs `fn` and reports into `msg`, then calls `after`. */
  function actionForm(id, msg, fn, after, ...fields) {
    return h("form#" + id + ".inline", {
      onsubmit: async (ev) => {
        ev.preventDefault();
        const button = ev.target.querySelector("button[type=submit]");
        button.disabled = true;
        msg.className = "muted";
        msg.textContent = "";
        try {
          msg.textContent = (await fn()) || "Done.";
          await after();
        } catch (e) {
          msg.className = "error";
          msg.textContent = e.message;
        } finally { button.disabled = false; }
      },
    }, fields, msg);
  }
  const whoOf = (x) => (x.user !== undefined ? "user " + x.user : "group " + x.group);
  const principalBody = (kind, name) => (kind === "group" ? { group: name } : { user: name });

  async function pageAccess(page, seq) {
    page.append(h("h1", null, "Access"));
    if (S.admin) await usersSection(page, seq);
    if (!current(seq)) return;
    await projectSection(page, seq);
    if (!current(seq)) return;
    await keysSection(page, seq);
  }

  async function usersSection(page, seq) {
    const box = h("div#users-box");
    const load = async () => {
      const users = await api("GET", "/qilin/api/users");
      if (!current(seq)) return;
      box.replaceChildren(users.length ? table("users", ["User", "Global admin", "Status", "Groups", "Changed", ""],
        users.map((u) => h("tr.user-row", { "data-user": u.name, "data-disabled": String(u.disabled), "data-admin": String(u.admin) },
          h("td", null, u.name), h("td", null, u.admin ? "yes" : ""),
          h("td", null, badge(u.disabled ? "DISABLED" : "READY")),
          h("td", null, (u.groups || []).join(", ")), h("td", null, fmtTime(Date.parse(u.modified))),
          h("td", null, u.name === S.user ? null : h("button.user-toggle" + (u.disabled ? "" : ".danger"), {
            type: "button", "data-user": u.name,
            onclick: async (ev) => {
              ev.target.disabled = true;
              try {
                await api("PUT", "/qilin/api/users/" + encodeURIComponent(u.name), { disabled: !u.disabled });
                clearError();
              } catch (e) { showError(e.message); }
              await load();
            },
          }, u.disabled ? "Enable" : "Disable")))), { id: "users-table" })
        : h("p.muted", null, "No users in the metadata store yet (only the built-in ADMIN)."));
    };
    const name = h("input#new-user-name", { placeholder: "name", size: 14, required: true });
    const password = h("input#new-user-password", { type: "password", placeholder: "password", autocomplete: "new-password", required: true });
    const admin = h("input#new-user-admin", { type: "checkbox" });
    const groups = h("input#new-user-groups", { placeholder: "groups, comma-separated", size: 22 });
    const msg = h("span#user-message.muted");
    const form = actionForm("user-form", msg, async () => {
      const body = { name: name.value.trim(), password: password.value, admin: admin.checked,
        groups: groups.value.split(",").map((g) => g.trim()).filter(Boolean) };
      await api("POST", "/qilin/api/users", body);
      password.value = "";
      return "Created user " + body.name + ".";
    }, load, name, password, h("label", null, admin, " global admin"), groups,
    h("button#new-user-submit.primary", { type: "submit" }, "Add user"));
    page.append(h("h2", null, "Users"), h("div.panel", null, box, h("h3", null, "New user"), form));
    await load();
  }

  async function projectSection(page, seq) {
    const projects = (await api("GET", "/kylin/api/projects"))
      .filter((p) => S.admin || S.roles[p.name] === "ADMIN");
    if (!current(seq)) return;
    page.append(h("h2", null, "Project grants and table rules"));
    if (!projects.length) {
      page.append(h("p.muted", null, "You hold ADMIN in no project."));
      return;
    }
    const select = h("select#access-project", { onchange: () => load() },
      projects.map((p) => h("option", { value: p.name }, p.name)));
    const grantsBox = h("div#grants-box");
    const rulesBox = h("div#rules-box");
    const tableSelect = h("select#rule-table");
    const project = () => select.value;
    const path = (what) => "/qilin/api/projects/" + encodeURIComponent(project()) + "/" + what;
    const load = async () => {
      const p = projects.find((x) => x.name === project());
      tableSelect.replaceChildren(...(p.tables || []).map((t) => h("option", { value: t }, t)));
      const [grants, rules] = await Promise.all([api("GET", path("grants")), api("GET", path("rules"))]);
      if (!current(seq)) return;
      grantsBox.replaceChildren(grants.length ? table("grants", ["Who", "Role", ""], grants.map((g) =>
        h("tr.grant-row", { "data-principal": whoOf(g), "data-role": g.role },
          h("td", null, whoOf(g)), h("td", null, g.role),
          h("td", null, h("button.grant-revoke.danger", {
            type: "button",
            onclick: async () => {
              try {
                const q = new URLSearchParams(principalBody(g.user !== undefined ? "user" : "group", g.user !== undefined ? g.user : g.group));
                await api("DELETE", path("grants") + "?" + q);
                clearError();
              } catch (e) { showError(e.message); }
              await load();
            },
          }, "Revoke")))), { id: "grants-table" }) : h("p.muted", null, "No grants: only global admins see this project."));
      rulesBox.replaceChildren(rules.length ? table("rules", ["Table", "Who", "Rule", ""], rules.map((r) =>
        h("tr.rule-row", { "data-rule": r.id, "data-type": r.type },
          h("td", null, r.table), h("td", null, whoOf(r)),
          h("td.mono", null, r.type === "deny_table" ? "table denied"
            : r.type === "deny_column" ? "column " + r.column + " denied" : "rows where " + r.filter),
          h("td", null, h("button.rule-remove.danger", {
            type: "button",
            onclick: async () => {
              try { await api("DELETE", "/qilin/api/rules/" + encodeURIComponent(r.id)); clearError(); } catch (e) { showError(e.message); }
              await load();
            },
          }, "Remove")))), { id: "rules-table" }) : h("p.muted", null, "No table rules."));
    };
    const kindSelect = (id) => h("select#" + id, null, h("option", { value: "user" }, "user"), h("option", { value: "group" }, "group"));
    const gKind = kindSelect("grant-kind");
    const gName = h("input#grant-name", { placeholder: "name", size: 14, required: true });
    const gRole = h("select#grant-role", null, ["QUERY", "OPERATION", "MANAGEMENT", "ADMIN"].map((r) => h("option", { value: r }, r)));
    const gMsg = h("span#grant-message.muted");
    const grantForm = actionForm("grant-form", gMsg, async () => {
      const body = Object.assign(principalBody(gKind.value, gName.value.trim()), { role: gRole.value });
      const g = await api("POST", path("grants"), body);
      return "Granted " + g.role + " to " + whoOf(g) + ".";
    }, load, gKind, gName, gRole, h("button#grant-submit.primary", { type: "submit" }, "Grant"));
    const rKind = kindSelect("rule-kind");
    const rName = h("input#rule-name", { placeholder: "name", size: 14, required: true });
    const rColumn = h("input#rule-column", { placeholder: "column", size: 14 });
    const rFilter = h("input#rule-filter", { placeholder: "c_region = 'ASIA'", size: 28 });
    const rType = h("select#rule-type", {
      onchange: () => { rColumn.hidden = rType.value !== "deny_column"; rFilter.hidden = rType.value !== "row_filter"; },
    }, [["row_filter", "row filter"], ["deny_column", "deny column"], ["deny_table", "deny table"]].map(([v, t]) => h("option", { value: v }, t)));
    rColumn.hidden = true;
    const rMsg = h("span#rule-message.muted");
    const ruleForm = actionForm("rule-form", rMsg, async () => {
      const body = Object.assign(principalBody(rKind.value, rName.value.trim()), { table: tableSelect.value, type: rType.value });
      if (rType.value === "deny_column") body.column = rColumn.value.trim();
      if (rType.value === "row_filter") body.filter = rFilter.value.trim();
      const r = await api("POST", path("rules"), body);
      return "Added rule " + r.id + ".";
    }, load, tableSelect, rKind, rName, rType, rColumn, rFilter, h("button#rule-submit.primary", { type: "submit" }, "Add rule"));
    page.append(h("div.toolbar", null, h("label", { for: "access-project" }, "Project"), select),
      h("div.panel", null, h("h3", null, "Grants"), grantsBox, grantForm),
      h("div.panel", null, h("h3", null, "Table rules"), rulesBox, ruleForm));
    await load();
  }

  async function keysSection(page, seq) {
    const box = h("div#keys-box");
    const secret = h("div#key-secret.notice", { hidden: true });
    const load = async () => {
      const keys = await api("GET", "/qilin/api/apikeys");
      if (!current(seq)) return;
      box.replaceChildren(keys.length ? table("keys", ["Key id", "User", "Created", "Expires", "Status", ""], keys.map((k) =>
        h("tr.key-row", { "data-key": k.id, "data-revoked": String(k.revoked) },
          h("td.mono", null, k.id), h("td", null, k.user), h("td", null, fmtTime(Date.parse(k.created))),
          h("td", null, k.expires ? fmtTime(Date.parse(k.expires)) : "never"),
          h("td", null, badge(k.revoked ? "DISCARDED" : "READY")),
          h("td", null, k.revoked ? null : h("button.key-revoke.danger", {
            type: "button", "data-key": k.id,
            onclick: async () => {
              try { await api("DELETE", "/qilin/api/apikeys/" + encodeURIComponent(k.id)); clearError(); } catch (e) { showError(e.message); }
              await load();
            },
          }, "Revoke")))), { id: "keys-table" }) : h("p.muted", null, "No API keys."));
    };
    const expires = h("input#key-expires", { placeholder: "expires: 30d, 2027-01-01 (empty: never)", size: 30 });
    // A global admin may create keys for others (the built-in ADMIN has none of its own).
    const user = S.admin ? h("input#key-user", { placeholder: "for user (empty: you)", size: 16 }) : null;
    const msg = h("span#key-message.muted");
    const form = actionForm("key-form", msg, async () => {
      const body = expires.value.trim() ? { expires: expires.value.trim() } : {};
      if (user && user.value.trim()) body.user = user.value.trim();
      const k = await api("POST", "/qilin/api/apikeys", body);
      secret.replaceChildren("New key for " + k.user + " (shown once, copy it now): ", h("code", null, k.key));
      secret.hidden = false;
      return "Created key " + k.id + ".";
    }, load, user, expires, h("button#key-create.primary", { type: "submit" }, "Create a key"));
    page.append(h("h2", null, "API keys"), h("div.panel", null,
      h("p.muted", null, "For tools that sign in once: use the key as the password, or as a bearer token."),
      box, form, secret));
    await load();
  }

  // ---- audit -------------------------------------------------------------------------------
  async function pageAudit(page, seq) {
    page.append(h("h1", null, "Audit log"));
    const user = h("input#audit-user", { placeholder: "user", size: 14, onchange: () => load() });
    const limit = h("select#audit-limit", { onchange: () => load() },
      ["100", "500", "2000"].map((v) => h("option", { value: v }, v + " events")));
    const box = h("div#audit-box");
    const load = async () => {
      const q = new URLSearchParams({ limit: limit.value });
      if (user.value.trim()) q.set("user", user.value.trim());
      const events = await api("GET", "/qilin/api/audit?" + q);
      if (!current(seq)) return;
      box.replaceChildren(events.length ? table("audit", ["Time", "User", "Instance", "Action", "Target", "Outcome", "Detail"],
        events.slice().reverse().map((e) => h("tr.audit-row", { "data-user": e.user, "data-action": e.action, "data-outcome": e.outcome },
          h("td", null, fmtTime(Date.parse(e.time))), h("td", null, e.user), h("td.mono", null, e.instance),
          h("td", null, e.action), h("td", null, e.target),
          h("td", null, h("span.badge.outcome-" + e.outcome, null, e.outcome)), h("td", null, e.detail))),
      { id: "audit-table" }) : h("p.muted", null, "No events."));
    };
    page.append(h("div.toolbar", null, h("label", null, "User"), user, limit,
      h("button#audit-reload", { type: "button", onclick: () => load().catch((e) => box.replaceChildren(errorBox(e))) }, "Refresh")), box);
    await load();
  }

  // ---- start -------------------------------------------------------------------------------
  $("#error-close").addEventListener("click", clearError);
  $("#sign-out").addEventListener("click", () => {
    S.clear();
    lastQuery = null;
    sessionStorage.removeItem("qilin.query-sql");
    pendingMessage = null;
    go("#/login");
  });
  window.addEventListener("hashchange", () => { clearError(); render(); });
  if (!location.hash) history.replaceState(null, "", "#/projects");
  render();
})();
