// Injected into a copy of a report by test_browser.py: measures the page as Chromium laid it out
// and writes the measurements as JSON into a pre element with id probe-out (read back with
// --dump-dom).
(function () {
  function rgba(s) {
    var m = s.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    var p = m[1].split(/[ ,\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  }
  function over(top, under) {  // alpha-composite top over an opaque colour
    var a = top[3];
    return [0, 1, 2].map(function (i) { return top[i] * a + under[i] * (1 - a); });
  }
  function background(el) {
    var stack = [];
    for (var e = el; e && e.nodeType === 1; e = e.parentElement) {
      var c = rgba(getComputedStyle(e).backgroundColor);
      if (c && c[3] > 0) stack.push(c);
      if (c && c[3] >= 1) break;
    }
    var bg = [255, 255, 255];
    for (var i = stack.length - 1; i >= 0; i--) bg = over(stack[i], bg);
    return bg;
  }
  function label(el) {
    return el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
      (el.className && typeof el.className === "string" ? "." + el.className.split(" ").join(".") : "");
  }
  var text = [];
  var all = document.querySelectorAll("body *");
  for (var i = 0; i < all.length; i++) {
    var el = all[i];
    if (el.closest("svg") || el.id === "probe-out") continue;
    var own = "";
    for (var n = el.firstChild; n; n = n.nextSibling) if (n.nodeType === 3) own += n.nodeValue;
    own = own.trim();
    if (!own) continue;
    var st = getComputedStyle(el);
    if (st.display === "none" || st.visibility === "hidden") continue;
    var fg = rgba(st.color), bg = background(el);
    text.push({el: label(el), text: own.slice(0, 40), fg: over(fg, bg), bg: bg,
               size: parseFloat(st.fontSize), weight: parseInt(st.fontWeight, 10)});
  }
  function box(el) {
    var r = el.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom];
  }
  var legends = [];
  var charts = document.querySelectorAll("svg.chart");
  for (var c = 0; c < charts.length; c++) {
    var svg = charts[c], id = svg.id;
    var areas = [];
    svg.querySelectorAll('g[id^="' + id + '-axes_"]').forEach(function (ax) {
      var patch = ax.querySelector('g[id^="' + id + '-patch_"]');  // the axes background = data area
      if (patch) areas.push({axes: ax.id, box: box(patch)});
    });
    svg.querySelectorAll('g[id^="' + id + '-legend_"]').forEach(function (lg) {
      legends.push({figure: id, legend: lg.id, box: box(lg), areas: areas});
    });
  }
  var cells = [];  // table cells whose content spills over their box (text drawn over neighbours)
  document.querySelectorAll("td, th").forEach(function (cell) {
    if (cell.scrollWidth > cell.clientWidth + 1)
      cells.push(label(cell) + " " + cell.textContent.trim().slice(0, 40) + ": " +
                 cell.scrollWidth + " > " + cell.clientWidth);
  });
  var main = document.querySelector("main");
  var out = {
    innerWidth: window.innerWidth,
    docScrollWidth: document.documentElement.scrollWidth,
    main: main ? {scrollWidth: main.scrollWidth, clientWidth: main.clientWidth,
                  right: main.getBoundingClientRect().right} : null,
    ids: Array.prototype.map.call(document.querySelectorAll("[id]"), function (e) { return e.id; }),
    text: text, legends: legends, cells: cells
  };
  var pre = document.createElement("pre");
  pre.id = "probe-out";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
