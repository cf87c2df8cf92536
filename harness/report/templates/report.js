/* normconf report: filters, discrepancy list, detail panel, per-mismatch plots.
   Every string from the results is inserted with textContent / setAttribute, never as markup. */
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("data").textContent);
  var S = D.S, O = D.O, nB = D.B.length, nC = D.C.length;
  // case: 0 id, 1 dtype, 2 mode, 3 file, 4 line, 5 description, 6 params [[k,v]], 7 inputs [[k,v]], 8 source
  // pair: 0 case, 1 backend, 2 outcome, 3 one-line summary (discrepancies only), 4 as_expected (1/0/null),
  //       5 seconds, 6 expected outcome, 7 expected because, 8 expectation reason, 9 notes
  // rows of pair i: R[i] (a second JSON block, parsed on first use: a detail view or a text search)
  // row:  0 output, 1 step, 2 outcome, 3 max_abs, 4 max_rel, 5 max_ulp, 6 tolerance (index into T), 7 mismatched,
  //       8 mismatched fraction, 9 worst index, 10 explanation, 11 explanation text, 12 message, 13 plot (-1: none)
  // tolerance: 0 atol, 1 rtol, 2 reason;  strings are indexes into S (see s())
  // plot: 0 first log10 edge, 1 bin width, 2 counts, 3 exact zeros, 4 non-finite, 5 channel max |err|, 6 channels
  // Trailing fields equal to their default are left out of the data (ROW_DEFAULTS / PAIR_DEFAULTS in html.py).
  var PD = [null, null, null, 0, 1, null, 0, 0, 0, 0], RD = [0, null, 0, null, null, null, 0, 0, 0, 0, 0, 0, 0, -1];
  var SEV = [1, 2, 3, 0, 4];
  var grid = new Array(nC * nB);
  D.P.forEach(function (p, i) { p.i = i; grid[p[0] * nB + p[1]] = p; });
  var R = null;
  function rowsOf(p) {
    if (R === null) R = JSON.parse(document.getElementById("rows").textContent);
    return R[p.i];
  }
  // fill in the trailing defaults of one pair (done when the pair is first used, not for all at load)
  function full(p) {
    if (p.length < PD.length) { while (p.length < PD.length) p.push(PD[p.length]); }
    if (!p.full) {
      rowsOf(p).forEach(function (r) { while (r.length < RD.length) r.push(RD[r.length]); });
      p.full = true;
    }
    return p;
  }
  function s(i) {  // a string of the table; a long text is a list of its pieces' indexes
    var v = S[i];
    if (v === undefined || v === null) return "";
    if (typeof v !== "string") { v = v.map(s).join(""); S[i] = v; }
    return v;
  }
  function bname(bi) { return s(D.B[bi]); }

  function el(tag, attrs) {
    var e = document.createElement(tag), k, i, kid;
    for (k in (attrs || {})) {
      if (k === "class") e.className = attrs[k];
      else if (k === "onclick") e.addEventListener("click", attrs[k]);
      else e.setAttribute(k, attrs[k]);
    }
    for (i = 2; i < arguments.length; i++) {
      kid = arguments[i];
      if (kid === null || kid === undefined || kid === false) continue;
      if (Array.isArray(kid)) kid.forEach(function (x) { if (x) e.appendChild(typeof x === "object" ? x : document.createTextNode(String(x))); });
      else e.appendChild(typeof kid === "object" ? kid : document.createTextNode(String(kid)));
    }
    return e;
  }
  function fmt(v, d) {
    if (v === null || v === undefined || v === "") return "";
    if (typeof v !== "number") return String(v);
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) return v.toExponential(d === undefined ? 3 : d - 1).replace(/\.?0+e/, "e");
    return String(Number(v.toPrecision(d || 4)));
  }
  function badge(o) { return el("span", { "class": "badge o-" + O[o] }, O[o]); }

  // ---------------------------------------------------------------- text index (built on first use)
  var caseText = null, pairText = null;
  function buildText() {
    caseText = D.C.map(function (c) { return (s(c[0]) + " " + s(c[5]) + " " + s(c[3])).toLowerCase(); });
    pairText = new Map();
    D.P.forEach(function (p) {
      var t = [bname(p[1]), O[p[2]], s(p[8]), s(p[9])];
      rowsOf(p).forEach(function (r) { t.push(s(r[0]), s(r[10]), s(r[11]), s(r[12])); });  // s(undefined) is ""
      pairText.set(p, t.join(" ").toLowerCase());
    });
  }

  // ---------------------------------------------------------------- filters
  var matrix = document.getElementById("matrix");
  var trs = matrix.querySelectorAll("tbody tr");
  var colStyle = document.createElement("style");
  document.head.appendChild(colStyle);
  var fText = document.getElementById("f-text"), fDtype = document.getElementById("f-dtype"),
      fMode = document.getElementById("f-mode"), fUx = document.getElementById("f-unexpected");
  var outBoxes = Array.prototype.slice.call(document.querySelectorAll("input[name=f-outcome]"));
  var bBoxes = Array.prototype.slice.call(document.querySelectorAll("input[name=f-backend]"));
  var listBody = document.querySelector("#list tbody"), listCount = document.getElementById("list-count");
  var LIST_PAGE = 300, listLimit = LIST_PAGE, listRows = [];

  function apply() {
    var q = fText.value.trim().toLowerCase();
    if (q && !caseText) buildText();
    var outs = outBoxes.map(function (b) { return b.checked; });
    var bsel = bBoxes.map(function (b) { return b.checked; });
    var dt = fDtype.value, md = fMode.value, onlyUx = fUx.checked;
    var css = "", bi, ci, nbShown = 0;
    for (bi = 0; bi < nB; bi++) {
      if (!bsel[bi]) css += ".mx tr>:nth-child(" + (bi + 2) + "),.mx col:nth-child(" + (bi + 2) + "){display:none}";
      else nbShown++;
    }
    colStyle.textContent = css;
    document.getElementById("n-backends").textContent = String(nbShown);
    var shownCases = 0, shownPairs = 0;
    listRows = [];
    for (ci = 0; ci < nC; ci++) {
      var c = D.C[ci], tr = trs[ci], cells = tr.cells, any = false;
      var caseOk = (!dt || s(c[1]) === dt) && (!md || s(c[2]) === md);
      var cq = !q || caseText[ci].indexOf(q) >= 0;
      for (bi = 0; bi < nB; bi++) {
        var p = grid[ci * nB + bi];
        if (!p) continue;
        var ok = caseOk && bsel[bi] && outs[p[2]] && (!onlyUx || p.length > 4 && p[4] === 0) && (cq || pairText.get(p).indexOf(q) >= 0);
        var td = cells[bi + 1];
        if (td.classList.contains("dim") === ok) td.classList.toggle("dim", !ok);
        if (ok) {
          any = true; shownPairs++;
          if (p[2] === 1 || p[2] === 2 || p[2] === 4 || (p.length > 4 && p[4] === 0)) listRows.push(p);
        }
      }
      tr.classList.toggle("hidden", !any);
      if (any) shownCases++;
    }
    document.getElementById("shown").textContent =
      shownCases + " of " + nC + " cases · " + shownPairs + " of " + D.P.length + " results shown";
    listRows.sort(function (a, b) {
      return ((a[4] === 0 ? 0 : 1) - (b[4] === 0 ? 0 : 1)) || (SEV[b[2]] - SEV[a[2]]) || (a[0] - b[0]) || (a[1] - b[1]);
    });
    listLimit = LIST_PAGE;
    renderList();
  }

  function why(p) {
    var t = s(p[3]);
    if (p.length > 6 && p[4] === 0 && s(p[6])) t = "expected " + s(p[6]) + ": " + s(p[8]) + " — " + t;
    return t;
  }

  function renderList() {
    var frag = document.createDocumentFragment(), n = Math.min(listRows.length, listLimit), i;
    for (i = 0; i < n; i++) {
      (function (p) {
        full(p);
        var ux = p[4] === 0 ? el("span", { "class": "no" }, "no") : p[4] === 1 ? el("span", { "class": "yes" }, "yes") : "—";
        frag.appendChild(el("tr", { "class": "click", tabindex: "0", onclick: function () { openDetail(p); } },
          el("td", { "class": "mono" }, s(D.C[p[0]][0])), el("td", {}, bname(p[1])), el("td", {}, badge(p[2])),
          el("td", {}, ux), el("td", { "class": "why" }, why(p))));
      })(listRows[i]);
    }
    if (listRows.length > n) {
      frag.appendChild(el("tr", {}, el("td", { colspan: "5" }, el("button", { type: "button", onclick: function () {
        listLimit += 1000; renderList(); } }, "show " + Math.min(1000, listRows.length - n) + " more of " + (listRows.length - n)))));
    }
    listBody.replaceChildren(frag);
    listCount.textContent = "(" + listRows.length + ")";
  }

  var timer = null;
  fText.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(apply, 120); });
  [fDtype, fMode, fUx].concat(outBoxes, bBoxes).forEach(function (b) { b.addEventListener("change", apply); });
  document.getElementById("b-all").addEventListener("click", function () { bBoxes.forEach(function (b) { b.checked = true; }); apply(); });
  document.getElementById("b-none").addEventListener("click", function () { bBoxes.forEach(function (b) { b.checked = false; }); apply(); });
  document.querySelectorAll("#counts li[data-outcome]").forEach(function (li) {
    li.style.cursor = "pointer";
    li.title = "show only this outcome";
    li.addEventListener("click", function () {
      var o = O.indexOf(li.getAttribute("data-outcome"));
      outBoxes.forEach(function (b, i) { b.checked = i === o; });
      apply();
    });
  });
  document.getElementById("n-unexpected").addEventListener("click", function () { fUx.checked = !fUx.checked; apply(); });

  // ---------------------------------------------------------------- detail panel
  var aside = document.getElementById("detail"), dBody = document.getElementById("d-body"), selTd = null;

  function kv(pairs) {
    return el("table", { "class": "kv" }, pairs.map(function (x) { return el("tr", {}, el("th", {}, x[0]), el("td", {}, x[1])); }));
  }
  function tolText(r, dtype) {
    var tol = D.T[r[6]] || [null, null, 0];
    var t = "rtol " + fmt(tol[1]) + ", atol " + fmt(tol[0]);
    return t + " — " + (s(tol[2]) || "default for the output's dtype (" + dtype + "; torch.testing.assert_close's)");
  }
  function shq(x) {  // shlex.quote
    x = String(x);
    if (!x) return "''";
    return /^[A-Za-z0-9_@%+=:,.\/-]+$/.test(x) ? x : "'" + x.replace(/'/g, "'\"'\"'") + "'";
  }

  function openDetail(p) {
    full(p);
    var c = D.C[p[0]], b = bname(p[1]), rows = rowsOf(p);
    var parts = [el("h2", {}, s(c[0]), " × ", b)];
    var exp = p[4] === null ? "expectation: none (backend unavailable)" :
      (p[4] === 1 ? "as expected" : "NOT as expected") +
      (s(p[6]) ? " — the case expects " + s(p[6]) + (s(p[7]) ? " because " + s(p[7]) : "") + ": " + s(p[8]) : "");
    parts.push(el("p", {}, badge(p[2]), " ", el("span", { "class": p[4] === 0 ? "no" : "" }, exp)));
    if (s(c[5])) parts.push(el("p", { "class": "hint" }, s(c[5])));
    var seen = {};
    rows.forEach(function (r) {
      if (s(r[10]) || s(r[11])) {
        var key = s(r[10]) + "\u0000" + s(r[11]);
        if (seen[key]) { seen[key].push(s(r[0])); return; }
        seen[key] = [s(r[0])];
      }
    });
    var keys = Object.keys(seen);
    if (keys.length) {
      parts.push(el("h3", {}, "Explanation"));
      keys.forEach(function (k) {
        var lt = k.split("\u0000");
        parts.push(el("div", { "class": "expl" }, el("b", {}, lt[0]), " (" + seen[k].join(", ") + ")", lt[1] ? "\n" + lt[1] : ""));
      });
    }
    var msgs = [];  // [where, message], one per distinct message
    rows.forEach(function (r) {
      var m = s(r[12]);
      if (!m) return;
      var where = s(r[0]) ? s(r[0]) + (r[1] !== null && r[1] !== 1 ? " step " + r[1] : "") : "";
      var f = msgs.filter(function (x) { return x[1] === m; })[0];
      if (f) { if (where) f[0].push(where); } else msgs.push([where ? [where] : [], m]);
    });
    if (msgs.length) {
      parts.push(el("h3", {}, p[2] === 4 ? "Error" : "Messages"));
      msgs.forEach(function (x) {
        parts.push(el("div", { "class": "msg" }, x[0].length ? el("b", {}, x[0].join(", ") + ": ") : null, x[1]));
      });
    }
    var cmp = rows.filter(function (r) { return s(r[0]); });
    if (cmp.length) {
      parts.push(el("h3", {}, "Metrics"));
      parts.push(el("table", { "class": "rows" },
        el("thead", {}, el("tr", {}, ["output", "step", "outcome", "max |err|", "max rel", "max ULP", "mismatched", "worst index"].map(function (h) { return el("th", {}, h); }))),
        el("tbody", {}, cmp.map(function (r) {
          return el("tr", {}, el("td", {}, s(r[0])), el("td", {}, r[1] === null ? "" : String(r[1])), el("td", {}, badge(r[2])),
            el("td", {}, fmt(r[3])), el("td", {}, fmt(r[4])), el("td", {}, fmt(r[5], 3)),
            el("td", {}, r[7] === null ? "" : r[7] + (r[8] ? " (" + fmt(100 * r[8], 3) + "%)" : "")), el("td", {}, s(r[9])));
        }))));
      var tols = [];
      cmp.forEach(function (r) {
        var dt = ["y", "eval_y", "x_hat"].indexOf(s(r[0])) >= 0 ? s(c[1]) : "parameter dtype";
        var t = tolText(r, dt), o = s(r[0]);
        var f = tols.filter(function (x) { return x[1] === t; })[0];
        if (f) { if (f[0].indexOf(o) < 0) f[0].push(o); } else tols.push([[o], t]);
      });
      parts.push(el("h3", {}, "Tolerance"));
      parts.push(el("ul", { "class": "tols" }, tols.map(function (x) { return el("li", {}, el("b", {}, x[0].join(", ")), ": " + x[1]); })));
      var withPlots = cmp.filter(function (r) { return r[13] >= 0; });
      var nonClose = cmp.filter(function (r) { return r[2] === 1 || r[2] === 2; });
      if (withPlots.length) {
        parts.push(el("h3", {}, "Error plots"));
        withPlots.forEach(function (r) {
          var g = D.G[r[13]], tol = D.T[r[6]] || [null], name = s(r[0]) + (r[1] !== null && r[1] !== 1 ? " step " + r[1] : "");
          parts.push(el("div", { "class": "plots" },
            el("div", { "class": "plotbox" }, el("h4", {}, name + ": |observed − expected|"), histSvg(g, tol[0])),
            el("div", { "class": "plotbox" }, el("h4", {}, name + ": max |error| per channel"), chanSvg(g, tol[0]))));
        });
      } else if (nonClose.length) {
        parts.push(el("p", { "class": "hint" }, "No per-element error data in this results file (meta.plot_data), so no error plots."));
      }
    }
    parts.push(el("h3", {}, "Reproduce"));
    var cmd = "normconf run " + shq(s(c[3]) || "cases/") + " --case " + shq(s(c[0])) + " --backend " + shq(b);
    var code = el("code", {}, cmd);
    parts.push(el("div", { "class": "repro" }, code, el("button", { type: "button", onclick: function (ev) {
      var btn = ev.target;
      function done() { btn.textContent = "copied"; setTimeout(function () { btn.textContent = "copy"; }, 1200); }
      try {
        navigator.clipboard.writeText(cmd).then(done, function () { selectText(code); });
      } catch (e) { selectText(code); }
    } }, "copy")));
    parts.push(el("h3", {}, "Case parameters"));
    parts.push(kv([["file", s(c[3]) + (c[4] ? ":" + c[4] : "")]].concat(c[6].map(function (x) { return [s(x[0]), s(x[1])]; }))));
    if (s(c[8])) parts.push(el("p", { "class": "hint" }, "source: " + s(c[8])));
    parts.push(el("h3", {}, "Input summary"));
    parts.push(kv(c[7].map(function (x) { return [s(x[0]), s(x[1])]; })));
    parts.push(el("h3", {}, "Backend"));
    var binfo = [["backend", b], ["version", s(D.V[p[1]])]];
    if (p[5] !== null) binfo.push(["seconds", fmt(p[5])]);
    if (s(p[9])) binfo.push(["notes", s(p[9])]);
    parts.push(kv(binfo));
    dBody.replaceChildren.apply(dBody, parts);
    aside.hidden = false;
    aside.scrollTop = 0;
    if (selTd) selTd.classList.remove("sel");
    selTd = trs[p[0]].cells[p[1] + 1];
    selTd.classList.add("sel");
    try { history.replaceState(null, "", "#case=" + encodeURIComponent(s(c[0])) + "&backend=" + encodeURIComponent(b)); } catch (e) { /* file: URLs in some browsers */ }
  }
  function selectText(node) {
    var r = document.createRange(); r.selectNodeContents(node);
    var sel = window.getSelection(); sel.removeAllRanges(); sel.addRange(r);
  }
  function closeDetail() {
    aside.hidden = true;
    if (selTd) selTd.classList.remove("sel");
    try { history.replaceState(null, "", location.pathname + location.search); } catch (e) { /* ignore */ }
  }
  document.getElementById("d-close").addEventListener("click", closeDetail);
  document.addEventListener("keydown", function (ev) { if (ev.key === "Escape" && !aside.hidden) closeDetail(); });
  function cellPair(td) {
    if (!td || td.tagName !== "TD") return null;
    return grid[Number(td.parentNode.getAttribute("data-c")) * nB + td.cellIndex - 1] || null;
  }
  matrix.addEventListener("click", function (ev) { var p = cellPair(ev.target.closest("td")); if (p) openDetail(p); });
  listBody.addEventListener("keydown", function (ev) { if (ev.key === "Enter" && ev.target.tagName === "TR") ev.target.click(); });

  // ---------------------------------------------------------------- plots (SVG from the numbers in D.G)
  var NS = "http://www.w3.org/2000/svg", W = 340, H = 170, ML = 46, MR = 10, MT = 12, MB = 34;
  function sv(tag, attrs, txt) {
    var e = document.createElementNS(NS, tag), k;
    for (k in attrs) e.setAttribute(k, attrs[k]);
    if (txt !== undefined) e.textContent = txt;
    return e;
  }
  function frame() {
    var svg = sv("svg", { "class": "plot", width: W, height: H, viewBox: "0 0 " + W + " " + H });
    svg.appendChild(sv("line", { x1: ML, y1: H - MB, x2: W - MR, y2: H - MB, "class": "ax" }));
    svg.appendChild(sv("line", { x1: ML, y1: MT, x2: ML, y2: H - MB, "class": "ax" }));
    return svg;
  }
  function histSvg(g, atol) {
    var svg = frame(), counts = g[2], lo = g[0], w = g[1], hi = lo + w * counts.length;
    var pw = W - ML - MR, ph = H - MT - MB;
    if (!counts.length) {
      svg.appendChild(sv("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no nonzero error (" + g[3] + " exact, " + g[4] + " non-finite)"));
      return svg;
    }
    if (atol > 0) { var la = Math.log10(atol); lo = Math.min(lo, Math.floor(la)); hi = Math.max(hi, Math.ceil(la)); }
    var span = (hi - lo) || 1, top = Math.max.apply(null, counts) || 1;
    function x(v) { return ML + (v - lo) / span * pw; }
    counts.forEach(function (c, i) {
      if (c <= 0) return;
      var e0 = g[0] + i * w, bh = Math.max(c / top * ph, 1);
      var r = sv("rect", { x: x(e0) + 0.5, y: MT + ph - bh, width: Math.max(x(e0 + w) - x(e0) - 1, 1), height: bh, "class": "bar" });
      r.appendChild(sv("title", {}, "[" + fmt(Math.pow(10, e0), 2) + ", " + fmt(Math.pow(10, e0 + w), 2) + "): " + c));
      svg.appendChild(r);
    });
    var step = span <= 8 ? 1 : span <= 16 ? 2 : 4;
    for (var d = Math.ceil(lo); d <= hi; d += step) {
      svg.appendChild(sv("line", { x1: x(d), y1: MT + ph, x2: x(d), y2: MT + ph + 4, "class": "ax" }));
      svg.appendChild(sv("text", { x: x(d), y: MT + ph + 15, "text-anchor": "middle" }, "1e" + d));
    }
    svg.appendChild(sv("text", { x: ML - 4, y: MT + 8, "text-anchor": "end" }, String(top)));
    svg.appendChild(sv("text", { x: ML - 4, y: MT + ph, "text-anchor": "end" }, "0"));
    if (atol > 0) {
      var xa = x(Math.log10(atol));
      svg.appendChild(sv("line", { x1: xa, y1: MT, x2: xa, y2: MT + ph, "class": "tol" }));
      svg.appendChild(sv("text", { x: xa + 3, y: MT + 22 }, "atol " + fmt(atol, 2)));
    }
    var extra = [];
    if (g[3]) extra.push(g[3] + " exact");
    if (g[4]) extra.push(g[4] + " non-finite");
    svg.appendChild(sv("text", { x: ML + pw / 2, y: H - 3, "text-anchor": "middle" },
      "elements per |error| bin (log scale)" + (extra.length ? "; " + extra.join(", ") : "")));
    return svg;
  }
  function chanSvg(g, atol) {
    var vals = g[5], svg = frame(), n = vals.length, pw = W - ML - MR, ph = H - MT - MB;
    var fin = vals.filter(function (v) { return v !== null && isFinite(v); });
    if (!fin.length) {
      svg.appendChild(sv("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no finite error"));
      return svg;
    }
    var top = Math.max.apply(null, fin) || 1, bw = pw / n, gap = bw > 3 ? 1 : 0;
    vals.forEach(function (v, i) {
      if (v === null || v <= 0) return;
      var bh = Math.max(v / top * ph, 0.5);
      var r = sv("rect", { x: ML + i * bw + gap / 2, y: MT + ph - bh, width: Math.max(bw - gap, 0.6), height: bh, "class": "bar b" });
      r.appendChild(sv("title", {}, "channel " + i + ": " + fmt(v)));
      svg.appendChild(r);
    });
    svg.appendChild(sv("text", { x: ML - 4, y: MT + 8, "text-anchor": "end" }, fmt(top, 2)));
    svg.appendChild(sv("text", { x: ML - 4, y: MT + ph, "text-anchor": "end" }, "0"));
    if (atol > 0 && atol <= top) {
      var ya = MT + ph - atol / top * ph;
      svg.appendChild(sv("line", { x1: ML, y1: ya, x2: ML + pw, y2: ya, "class": "tol" }));
      svg.appendChild(sv("text", { x: ML + pw, y: ya - 3, "text-anchor": "end" }, "atol"));
    }
    var ticks = [0, n - 1];
    if (n > 2) ticks.push(Math.floor(n / 2));
    ticks.filter(function (v, i, a) { return a.indexOf(v) === i; }).forEach(function (i) {
      svg.appendChild(sv("text", { x: ML + (i + 0.5) * bw, y: MT + ph + 15, "text-anchor": "middle" }, String(i)));
    });
    svg.appendChild(sv("text", { x: ML + pw / 2, y: H - 3, "text-anchor": "middle" },
      g[6] > n ? "channel (first " + n + " of " + g[6] + ")" : "channel"));
    return svg;
  }

  // ---------------------------------------------------------------- heatmap of a large run: inserted when opened
  var heatTpl = document.getElementById("heat-tpl");
  if (heatTpl) {
    document.getElementById("heat-details").addEventListener("toggle", function () {
      var box = document.getElementById("heat");
      if (!box.firstChild) box.appendChild(heatTpl.content.cloneNode(true));
    });
  }

  // ---------------------------------------------------------------- start
  apply();
  if (location.hash.length > 1) {
    var h = new URLSearchParams(location.hash.slice(1)), hc = h.get("case"), hb = h.get("backend");
    var ci = D.C.findIndex(function (c) { return s(c[0]) === hc; }), bi = D.B.findIndex(function (x) { return s(x) === hb; });
    if (ci >= 0 && bi >= 0 && grid[ci * nB + bi]) openDetail(grid[ci * nB + bi]);
  }
  document.body.setAttribute("data-ready-ms", String(Math.round(performance.now())));
  document.body.setAttribute("data-ready", "1");
})();
