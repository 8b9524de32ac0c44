// The HTML report: one self-contained page (no network: styles, script and data inline). The
// page carries the run as JSON (the JSON report's fields plus each output's profile,
// bnoracle/profile.hpp) in a <script type="application/json"> element and draws everything from
// it: the summary, every result with its reason and reproduction line, and per output the worst
// element in decimal and hex, error/bound per element and per statistic group, and a histogram.
// Without JavaScript the page shows the text report.
#include "bnoracle/report.hpp"

#include "bnoracle/judge.hpp"
#include "bnoracle/profile.hpp"
#include "report_json.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <ostream>
#include <sstream>
#include <string>

namespace bnoracle {

namespace {

// A ratio as the page reads it: 4 significant digits, null where nothing was measured, -1 where
// a class rule was broken (the page draws those above every finite point).
nlohmann::json ratio_value(float v) {
  if (std::isnan(v)) return nullptr;
  if (std::isinf(v)) return -1;
  char text[32];
  std::snprintf(text, sizeof text, "%.4g", static_cast<double>(v));
  return std::stod(text);
}

nlohmann::json profile_json(const output_profile& p) {
  nlohmann::json j;
  j["count"] = p.count;
  j["bin"] = p.bin;
  auto& e = j["elements"] = nlohmann::json::array();
  for (const float v : p.elements) e.push_back(ratio_value(v));
  j["groups_total"] = p.groups_total;
  auto& g = j["groups"] = nlohmann::json::array();
  for (const float v : p.groups) g.push_back(ratio_value(v));
  auto& h = j["histogram"] = nlohmann::json::array();
  for (std::size_t b = 0; b < k_histogram_bins; ++b) {
    h.push_back({{"label", histogram_label(b)}, {"count", p.histogram[b]}});
  }
  return j;
}

// Text inside <script> ends at the first "</": JSON may write "<\/" instead.
std::string script_safe(std::string json) {
  std::string out;
  out.reserve(json.size());
  for (std::size_t i = 0; i < json.size(); ++i) {
    out += json[i];
    if (json[i] == '<' && i + 1 < json.size() && json[i + 1] == '/') out += '\\';
  }
  return out;
}

constexpr const char* k_style = R"css(
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 1em;
       color: #1d2330; }
h1 { font-size: 1.4em; margin: 0.2em 0; }
table.tensor { font-size: 0.8em; margin: 0.4em 0; }
table.tensor caption { text-align: left; font-weight: bold; }
table.tensor td { text-align: right; padding: 0 0.4em; }
#diagnosis { border-left: 4px solid #b35c00; padding: 0 0.8em; margin: 0.8em 0; }
#diagnosis p.also { color: #555; }
.verdict { display: inline-block; padding: 0.15em 0.6em; border-radius: 4px; color: #fff;
           font-weight: 600; }
.v-conformant, .r-pass { background: #2d7d46; }
.v-not_conformant, .r-fail { background: #b3261e; }
.v-kernel_fault, .r-fault { background: #7a1fa2; }
.v-nothing_judged, .r-skip { background: #6b6f76; }
.r-mistrusted { background: #a26b00; }
table { border-collapse: collapse; margin: 0.4em 0; }
table.outputs { font-size: 0.9em; }
td, th { border: 1px solid #d5d8de; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f1f3f6; }
details.case { border: 1px solid #d5d8de; border-radius: 4px; margin: 0.35em 0; padding: 0.2em 0.6em; }
details.case > summary { cursor: pointer; }
details.case > summary .verdict { font-size: 0.85em; min-width: 6em; text-align: center; }
pre { background: #f6f7f9; padding: 0.5em; overflow-x: auto; white-space: pre-wrap; }
code { background: #f6f7f9; padding: 0 0.2em; }
.plots { display: flex; flex-wrap: wrap; gap: 0.8em; margin: 0.4em 0 0.8em 0; }
.plot { border: 1px solid #e2e5ea; }
.plot text { font: 10px system-ui, sans-serif; fill: #4a505c; }
.muted { color: #6b6f76; }
.counts span { margin-right: 1.2em; }
)css";

constexpr const char* k_script = R"js(
'use strict';
const data = JSON.parse(document.getElementById('bnoracle-data').textContent);
const SVG = 'http://www.w3.org/2000/svg';
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}
// Error/bound on a log2 axis from 2^-12 up to the largest value (at least 2^1); 0 sits on the
// floor, a broken class rule (-1) above the top.
function ratioPlot(values, title, xLabel, perPoint, kind) {
  const W = 520, H = 170, L = 44, R = 10, T = 22, B = 30;
  const finite = values.filter(v => v !== null && v > 0);
  const top = Math.max(1, Math.ceil(Math.log2(Math.max(2, ...finite))));
  const bottom = -12;
  const y = v => {
    if (v === -1) return T - 6;
    const l = v > 0 ? Math.max(bottom, Math.log2(v)) : bottom;
    return T + (H - T - B) * (top - l) / (top - bottom);
  };
  const n = values.length;
  const x = i => L + (W - L - R) * (n <= 1 ? 0.5 : i / (n - 1));
  const s = svg('svg', {class: 'plot', width: W, height: H, viewBox: `0 0 ${W} ${H}`,
                        'data-kind': kind, 'data-values': n});
  s.appendChild(svg('text', {x: L, y: 12}, title));
  for (let e = bottom; e <= top; e += 4) {
    s.appendChild(svg('line', {x1: L, x2: W - R, y1: y(2 ** e), y2: y(2 ** e), stroke: '#eceef2'}));
    s.appendChild(svg('text', {x: 4, y: y(2 ** e) + 3}, `2^${e}`));
  }
  s.appendChild(svg('line', {x1: L, x2: W - R, y1: y(1), y2: y(1), stroke: '#b3261e',
                             'stroke-dasharray': '4 3'}));
  s.appendChild(svg('text', {x: W - R - 34, y: y(1) - 3}, 'bound'));
  const g = svg('g', {class: 'points'});
  values.forEach((v, i) => {
    if (v === null) return;
    const bad = v === -1 || v > 1;
    const c = svg('circle', {cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: n > 64 ? 1.6 : 2.6,
                             fill: bad ? '#b3261e' : '#2f5fb3'});
    c.appendChild(svg('title', {}, v === -1 ? `#${i}: class rule broken`
                                            : `#${i}${perPoint}: error/bound ${v}`));
    g.appendChild(c);
  });
  s.appendChild(g);
  s.appendChild(svg('text', {x: L, y: H - 8}, xLabel));
  return s;
}
function histogramPlot(hist, title) {
  const W = 520, H = 170, L = 36, R = 10, T = 22, B = 34;
  const max = Math.max(1, ...hist.map(h => h.count));
  const w = (W - L - R) / hist.length;
  const s = svg('svg', {class: 'plot', width: W, height: H, viewBox: `0 0 ${W} ${H}`,
                        'data-kind': 'histogram', 'data-values': hist.length});
  s.appendChild(svg('text', {x: L, y: 12}, title));
  const g = svg('g', {class: 'points'});
  hist.forEach((h, i) => {
    const height = h.count === 0 ? 0 : Math.max(1, (H - T - B) * Math.log1p(h.count) / Math.log1p(max));
    const over = h.label.startsWith('>=') || ['2^0', '2^1', '2^2'].includes(h.label);
    const r = svg('rect', {x: (L + i * w + 1).toFixed(1), y: (H - B - height).toFixed(1),
                           width: (w - 2).toFixed(1), height: height.toFixed(1),
                           fill: over ? '#b3261e' : '#2f5fb3'});
    r.appendChild(svg('title', {}, `error/bound ${h.label}: ${h.count} elements`));
    g.appendChild(r);
    if (i % 2 === 0) s.appendChild(svg('text', {x: L + i * w, y: H - B + 12}, h.label));
  });
  s.appendChild(g);
  s.appendChild(svg('text', {x: L, y: H - 6}, 'error/bound (elements per bin, log height)'));
  return s;
}
// A number of the report to 4 significant digits ("inf" and "nan" as they are).
function short(v) {
  return typeof v === 'number' ? String(Number(v.toPrecision(4))) : String(v);
}
function outputsTable(outputs) {
  const t = el('table', {class: 'outputs'});
  const head = el('tr');
  for (const h of ['output', 'elements', 'worst element', 'got', 'expected', 'error (ulps)',
                   'bound (ulps)', 'error/bound', 'strict / standard / lenient']) {
    head.appendChild(el('th', {}, h));
  }
  t.appendChild(head);
  for (const o of outputs) {
    const row = el('tr');
    const cells = [o.name + (o.mistrusted ? ' (mistrusted)' : ''), String(o.count),
                   o.class_failure || o.worst, o.got_text, o.expected_text, short(o.error_ulps),
                   short(o.bound_ulps), short(o.worst_ratio),
                   ['strict', 'standard', 'lenient'].map(l => o.passed[l] ? 'pass' : 'FAIL').join(' / ')];
    for (const c of cells) row.appendChild(el('td', {}, c));
    t.appendChild(row);
  }
  return t;
}
// The op of a result: its problem names it unless it is batch norm (docs/cli.md).
// A hex float of the reports ("0x1.8p+1", "-0x0p+0", "inf", "nan") as a number.
function hexValue(t) {
  const m = /^(-?)0x([0-9a-f])(?:\.([0-9a-f]*))?p([-+][0-9]+)$/i.exec(t);
  if (!m) return t === 'inf' ? Infinity : t === '-inf' ? -Infinity : NaN;
  const frac = m[3] || '';
  let v = parseInt(m[2], 16);
  for (let i = 0; i < frac.length; ++i) v += parseInt(frac[i], 16) / Math.pow(16, i + 1);
  v *= Math.pow(2, parseInt(m[4], 10));
  return m[1] ? -v : v;
}
const k_table_rows = 64, k_table_cols = 32;
// A property's shrunk counterexample as tables: its problem line gives the shape
// (N x C x spatial...), each "name = [...]" line a tensor in logical order, drawn one row per
// (n, c) and one column per spatial position (per-channel vectors as one row), at most
// k_table_rows x k_table_cols cells; each cell shows the value in decimal, its hex in the title.
function counterexampleTables(reason) {
  const at = reason.indexOf('shrunk counterexample:');
  if (at < 0) return null;
  const lines = reason.slice(at).split('\n').slice(1);
  const shape = /^\S+ ([0-9]+(?:x[0-9]+)*)/.exec(lines[0] || '');
  if (!shape) return null;
  const dims = shape[1].split('x').map(Number);
  const N = dims[0], C = dims.length > 1 ? dims[1] : 1;
  const S = dims.slice(2).reduce((a, b) => a * b, 1);
  const box = el('div', {class: 'counterexample'});
  for (const line of lines.slice(1)) {
    const m = /^\s+([a-z_]+) = \[(.*)\]$/.exec(line);
    if (!m) continue;
    const values = m[2] ? m[2].split(', ') : [];
    const perElement = values.length > 0 && values.length === N * C * S;
    const rows = perElement ? N * C : 1, cols = perElement ? S : values.length;
    const table = el('table', {class: 'tensor', 'data-tensor': m[1]});
    table.appendChild(el('caption', {}, `${m[1]} (${values.length} values` +
        (rows > k_table_rows || cols > k_table_cols ? `, the first ${Math.min(rows, k_table_rows)} × ${Math.min(cols, k_table_cols)} shown` : '') + ')'));
    const head = el('tr');
    head.appendChild(el('th', {}, perElement ? 'n, c \\ s' : ''));
    for (let j = 0; j < Math.min(cols, k_table_cols); ++j) head.appendChild(el('th', {}, String(j)));
    table.appendChild(head);
    for (let r = 0; r < Math.min(rows, k_table_rows); ++r) {
      const tr = el('tr');
      tr.appendChild(el('th', {}, perElement ? `${Math.floor(r / C)}, ${r % C}` : m[1]));
      for (let j = 0; j < Math.min(cols, k_table_cols); ++j) {
        const text = values[r * cols + j];
        tr.appendChild(el('td', {title: text}, String(Number(hexValue(text).toPrecision(6)))));
      }
      table.appendChild(tr);
    }
    box.appendChild(table);
  }
  return box.childNodes.length ? box : null;
}
function opOf(c) {
  const m = / op=(\S+)/.exec(c.problem);
  return m ? m[1] : 'batch_norm';
}
function drawPlots(box, c) {
  if (box.dataset.drawn) return;
  box.dataset.drawn = '1';
  for (const o of c.outputs) {
    if (!o.profile) continue;
    const p = o.profile;
    const plots = el('div', {class: 'plots', 'data-output': o.name});
    const per = p.bin > 1 ? ` (elements ${p.bin} per point, largest shown)` : '';
    plots.appendChild(ratioPlot(p.elements, `${o.name}: error/bound per element`,
                                `element, logical order${per}; ${p.count} in all`,
                                p.bin > 1 ? ` of ${p.bin}` : '', 'elements'));
    if (p.groups.length > 0) {
      const shown = p.groups.length < p.groups_total ? ` (first ${p.groups.length})` : '';
      plots.appendChild(ratioPlot(p.groups, `${o.name}: largest error/bound per statistic group`,
                                  `statistic group${shown}; ${p.groups_total} in all`, '', 'groups'));
    }
    plots.appendChild(histogramPlot(p.histogram, `${o.name}: histogram of error/bound`));
    box.appendChild(plots);
  }
}
function render() {
  const s = data.summary, k = data.kernel, opt = data.options;
  const head = document.getElementById('summary');
  head.appendChild(el('h1', {}, `bnoracle check: ${k.name} ${k.version}`));
  const v = el('p');
  v.appendChild(el('span', {class: `verdict v-${s.verdict.toLowerCase().replace(/ /g, '_')}`},
                    s.verdict));
  v.appendChild(document.createTextNode(` at ${opt.level}; best level met by every judged case: ${s.best_level}; exit code ${s.exit_code}`));
  head.appendChild(v);
  const t = el('table');
  const rows = [['kernel', `${k.name} ${k.version}`], ['convention', opt.convention],
                ['ops', [...new Set(data.cases.map(opOf))].join(', ')],
                ['data types', opt.types], ['seed', String(opt.seed)], ['level', opt.level],
                ['filter', opt.filter || '(none)'], ['shard', opt.shard || '(whole run)']];
  for (const [a, b] of rows) {
    const r = el('tr');
    r.appendChild(el('th', {}, a));
    r.appendChild(el('td', {}, b));
    t.appendChild(r);
  }
  head.appendChild(t);
  const counts = el('p', {class: 'counts'});
  for (const key of ['passed', 'failed', 'skipped', 'mistrusted', 'faults']) {
    counts.appendChild(el('span', {}, `${s[key]} ${key}`));
  }
  head.appendChild(counts);
  for (const u of s.unjudged) head.appendChild(el('p', {}, `no evidence: ${u}`));
  if (data.diagnosis && data.diagnosis.length) {
    const box = el('div', {id: 'diagnosis'});
    box.appendChild(el('h2', {}, 'Diagnosis'));
    data.diagnosis.forEach((d, i) => {
      const p = el('p', {class: i === 0 ? 'likely' : 'also'});
      p.appendChild(el('strong', {}, `${i === 0 ? 'Most likely' : 'Also consistent'}: ${d.title}`));
      p.appendChild(document.createTextNode(
          ` [${d.class}] — explains ${d.explained} of ${d.failed} failed results` +
          (d.magnitude_only ? ' in magnitude only' : '') + '. ' +
          (d.evidence.length ? `Evidence: ${d.evidence.join('; ')}. ` : '') +
          (d.example ? `E.g. ${d.example}.` : '')));
      box.appendChild(p);
    });
    head.appendChild(box);
  }

  const all = location.hash === '#all';
  const list = document.getElementById('cases');
  const order = {fault: 0, fail: 1, mistrusted: 2, skip: 3, pass: 4};
  const verdictOf = c => c.verdict.toLowerCase();
  const cases = data.cases.map((c, i) => [c, i]).sort((a, b) =>
      (order[verdictOf(a[0])] - order[verdictOf(b[0])]) || (a[1] - b[1]));
  for (const [c, index] of cases) {
    const v = verdictOf(c);
    const d = el('details', {class: 'case', 'data-verdict': v, 'data-index': index});
    const sum = el('summary');
    sum.appendChild(el('span', {class: `verdict r-${v}`}, c.verdict));
    sum.appendChild(document.createTextNode(
        ` ${c.case} · ${c.mode}${c.step ? ' step ' + c.step : ''} · ${opOf(c)}` +
        (c.best_level !== 'none' ? ` · best ${c.best_level}` : '') + ` · ${c.seconds.toFixed(3)} s`));
    d.appendChild(sum);
    const box = el('div');
    box.appendChild(el('p', {class: 'muted'}, `${c.problem} (${c.tier})`));
    if (c.reason) box.appendChild(el('pre', {}, c.reason));
    const tables = c.mode === 'property' && c.reason ? counterexampleTables(c.reason) : null;
    if (tables) box.appendChild(tables);
    if (c.reason_file) box.appendChild(el('p', {}, `whole reason: ${c.reason_file}`));
    if (c.repro) {
      const p = el('p', {}, 'reproduce: ');
      p.appendChild(el('code', {}, c.repro));
      box.appendChild(p);
    }
    if (c.outputs.length > 0) box.appendChild(outputsTable(c.outputs));
    d.appendChild(box);
    // Plots are drawn when a result is opened (failures and faults are open from the start; the
    // address ending in #all opens every result).
    d.addEventListener('toggle', () => { if (d.open) drawPlots(box, c); });
    if (all || v === 'fail' || v === 'fault') {
      d.open = true;
      drawPlots(box, c);
    }
    list.appendChild(d);
  }
  document.getElementById('text-report').removeAttribute('open');
  document.body.dataset.rendered = 'yes';
}
render();
)js";

}  // namespace

void write_html(std::ostream& os, const run_summary& s) {
  nlohmann::json j = report_json(s);
  std::size_t c = 0;
  for (const auto& r : s.results) {
    auto& outs = j["cases"][c++]["outputs"];
    for (std::size_t i = 0; i < r.outputs.size(); ++i) {
      const output_result& o = r.outputs[i];
      outs[i]["got_text"] = value_text(o.got);
      outs[i]["expected_text"] = value_text(o.expected);
      if (o.profile) outs[i]["profile"] = profile_json(*o.profile);
    }
  }
  std::ostringstream text;
  write_report(text, s, report_format::text, false);
  os << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
     << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
     << "<title>bnoracle: " << xml_escape(s.kernel.name) << " — "
     << xml_escape(std::string(to_string(s.verdict()))) << "</title>\n"
     << "<style>" << k_style << "</style>\n</head>\n<body>\n"
     << "<header id=\"summary\"></header>\n<section id=\"cases\"></section>\n"
     << "<details id=\"text-report\" open><summary>Text report</summary><pre>"
     << xml_escape(text.str()) << "</pre></details>\n"
     << "<script type=\"application/json\" id=\"bnoracle-data\">"
     << script_safe(j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
     << "</script>\n<script>" << k_script << "</script>\n</body>\n</html>\n";
}

}  // namespace bnoracle
