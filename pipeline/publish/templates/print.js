(function () {
  var opened = [];
  function charts() { return document.querySelectorAll('.js-plotly-plot'); }
  function forPrint() {
    document.querySelectorAll('details:not([open])').forEach(function (d) { d.open = true; opened.push(d); });
    if (window.Plotly) charts().forEach(function (div) { Plotly.relayout(div, {width: 700}); });
  }
  function forScreen() {
    opened.forEach(function (d) { d.open = false; }); opened = [];
    if (window.Plotly) charts().forEach(function (div) { Plotly.relayout(div, {width: null, autosize: true}); });
  }
  window.addEventListener('beforeprint', forPrint);
  window.addEventListener('afterprint', forScreen);
  if (window.matchMedia) {
    window.matchMedia('print').addEventListener('change', function (m) { if (m.matches) forPrint(); else forScreen(); });
  }
})();
