#include "cli/bench_report.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "common/error.h"

namespace pagedllm::cli {

namespace {

int64_t int_field(const nlohmann::json& record, const char* key, int64_t fallback) {
  auto it = record.find(key);
  return it != record.end() && it->is_number() ? it->get<int64_t>() : fallback;
}

double number(const BenchRecord& record, const char* key) {
  auto it = record.find(key);
  return it != record.end() && it->is_number() ? it->get<double>() : 0.0;
}

std::string text(const BenchRecord& record, const char* key) {
  auto it = record.find(key);
  if (it == record.end() || it->is_null()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

std::string human_bytes(double bytes) {
  if (bytes >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", bytes / (1024.0 * 1024 * 1024));
  return fmt::format("{:.2f} MiB", bytes / (1024.0 * 1024));
}

std::string human_count(double n) {
  if (n >= 1e9) return fmt::format("{:.2f} B", n / 1e9);
  if (n >= 1e6) return fmt::format("{:.2f} M", n / 1e6);
  return fmt::format("{:.2f} K", n / 1e3);
}

std::string percent(const BenchRecord& record, const char* key) {
  auto it = record.find(key);
  if (it == record.end() || !it->is_number()) return "-";
  return fmt::format("{:.1f}%", it->get<double>());
}

// Fields that tell the rows of one run apart beyond the test itself; shown as columns when they vary.
const std::vector<std::pair<const char*, const char*>> kSweptColumns = {
    {"n_batch", "n_batch"},     {"block_size", "block"},      {"type_k", "type_k"},
    {"kv_layout", "layout"},    {"prefix_cache", "prefix"},   {"n_parallel", "npl"},
};

std::string csv_cell(const nlohmann::ordered_json& value) {
  std::string cell = value.is_string() ? value.get<std::string>() : value.dump();
  if (cell.find_first_of(",\"\n") != std::string::npos) {
    std::string quoted = "\"";
    for (char c : cell) {
      if (c == '"') quoted += '"';
      quoted += c;
    }
    return quoted + "\"";
  }
  return cell;
}

std::string basename_of(const std::string& path) { return std::filesystem::path(path).filename().string(); }

// The test's name without the value the chart runs along: pp16, pp32, pp64 are one line "pp" along n_prompt.
std::string test_kind(const BenchRecord& record, const std::string& x_field) {
  const int64_t n_prompt = int_field(record, "n_prompt", 0), n_gen = int_field(record, "n_gen", 0);
  const int64_t n_depth = int_field(record, "n_depth", 0);
  std::string name;
  if (n_prompt > 0) name += x_field == "n_prompt" ? "pp" : fmt::format("pp{}", n_prompt);
  if (n_gen > 0) {
    if (!name.empty()) name += '+';
    name += x_field == "n_gen" ? std::string("tg") : fmt::format("tg{}", n_gen);
  }
  if (x_field == "n_depth") name += " @ depth";
  else if (n_depth > 0) name += fmt::format(" @ d{}", n_depth);
  return name;
}

}  // namespace

std::string bench_test_name(const BenchRecord& record) {
  const int64_t n_prompt = int_field(record, "n_prompt", 0), n_gen = int_field(record, "n_gen", 0);
  const int64_t n_depth = int_field(record, "n_depth", 0);
  std::string name;
  if (n_prompt > 0 && n_gen > 0) name = fmt::format("pp{}+tg{}", n_prompt, n_gen);
  else if (n_prompt > 0) name = fmt::format("pp{}", n_prompt);
  else name = fmt::format("tg{}", n_gen);
  if (n_depth > 0) name += fmt::format(" @ d{}", n_depth);
  return name;
}

std::string render_bench(const std::vector<BenchRecord>& records, const std::string& format,
                         const std::string& compare_label) {
  if (format == "json") {
    nlohmann::ordered_json array = nlohmann::ordered_json::array();
    for (const BenchRecord& r : records) array.push_back(r);
    return array.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  if (format == "jsonl") {
    std::string out;
    for (const BenchRecord& r : records) out += r.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    return out;
  }
  if (format == "csv") {
    std::vector<std::string> keys;
    for (const BenchRecord& r : records) {
      for (const auto& [key, value] : r.items()) {
        if (std::find(keys.begin(), keys.end(), key) == keys.end()) keys.push_back(key);
      }
    }
    std::string out;
    for (size_t i = 0; i < keys.size(); ++i) out += (i > 0 ? "," : "") + keys[i];
    out += "\n";
    for (const BenchRecord& r : records) {
      for (size_t i = 0; i < keys.size(); ++i) {
        if (i > 0) out += ",";
        auto it = r.find(keys[i]);
        if (it != r.end()) out += csv_cell(*it);
      }
      out += "\n";
    }
    return out;
  }
  if (format != "md") fail("-o '{}' is not one of md, csv, json, jsonl", format);

  std::vector<std::pair<const char*, const char*>> swept;
  for (const auto& column : kSweptColumns) {
    std::set<std::string> values;
    for (const BenchRecord& r : records) values.insert(text(r, column.first));
    if (values.size() > 1) swept.push_back(column);
  }
  const bool parallel = std::any_of(records.begin(), records.end(),
                                    [](const BenchRecord& r) { return int_field(r, "n_parallel", 1) > 1; });
  std::vector<std::string> header = {"model", "size", "params", "backend", "threads"};
  for (const auto& column : swept) header.emplace_back(column.second);
  for (const char* h : {"test", "t/s"}) header.emplace_back(h);
  if (parallel) header.emplace_back("t/s per seq");
  for (const char* h : {"MB/token", "KV MB/token", "GB/s", "% BW", "GFLOP/s", "% FLOP", "KV MiB", "blocks", "waste"}) {
    header.emplace_back(h);
  }
  if (!compare_label.empty()) header.push_back("vs " + compare_label);

  std::vector<std::vector<std::string>> rows;
  for (const BenchRecord& r : records) {
    std::vector<std::string> row = {text(r, "model_type"), human_bytes(number(r, "model_size")),
                                    human_count(number(r, "model_n_params")), text(r, "backends"),
                                    text(r, "n_threads")};
    for (const auto& column : swept) row.push_back(text(r, column.first));
    row.push_back(bench_test_name(r));
    row.push_back(fmt::format("{:.2f} ± {:.2f}", number(r, "avg_ts"), number(r, "stddev_ts")));
    if (parallel) row.push_back(fmt::format("{:.2f}", number(r, "avg_ts_per_sequence")));
    row.push_back(fmt::format("{:.2f}", number(r, "bytes_per_token") / 1e6));
    row.push_back(fmt::format("{:.3f}", number(r, "kv_bytes_per_token") / 1e6));
    row.push_back(fmt::format("{:.2f}", number(r, "achieved_gb_s")));
    row.push_back(percent(r, "bandwidth_percent"));
    row.push_back(fmt::format("{:.1f}", number(r, "achieved_gflop_s")));
    row.push_back(percent(r, "compute_percent"));
    row.push_back(fmt::format("{:.2f}", number(r, "kv_mib")));
    row.push_back(fmt::format("{}/{}", text(r, "kv_blocks_used"), text(r, "kv_blocks_total")));
    row.push_back(fmt::format("{:.1f}%", number(r, "kv_waste_percent")));
    if (!compare_label.empty()) {
      row.push_back(r.contains("compare_ratio") ? fmt::format("{:.2f}×", number(r, "compare_ratio")) : "-");
    }
    rows.push_back(std::move(row));
  }
  std::vector<size_t> widths(header.size());
  auto width_of = [](const std::string& s) {  // UTF-8 code points ("±", "×" are one column each)
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80 ? 1 : 0;
    return n;
  };
  for (size_t i = 0; i < header.size(); ++i) {
    widths[i] = width_of(header[i]);
    for (const auto& row : rows) widths[i] = std::max(widths[i], width_of(row[i]));
  }
  // Text columns read left to right; numbers line up on the right.
  const std::set<std::string> text_columns = {"model", "backend", "test", "type_k", "layout", "prefix"};
  auto right_aligned = [&](size_t i) { return text_columns.count(header[i]) == 0; };
  auto line = [&](const std::vector<std::string>& cells, bool numeric_right) {
    std::string out = "|";
    for (size_t i = 0; i < cells.size(); ++i) {
      const std::string pad(widths[i] - width_of(cells[i]), ' ');
      const bool right = numeric_right && right_aligned(i);
      out += ' ';
      out += right ? pad : "";
      out += cells[i];
      out += right ? "" : pad;
      out += " |";
    }
    return out + "\n";
  };
  std::string out = line(header, false);
  out += "|";
  for (size_t i = 0; i < header.size(); ++i) {
    const bool right = right_aligned(i);
    out += " " + std::string(widths[i] - (right ? 1 : 0), '-') + (right ? ":" : "") + " |";
  }
  out += "\n";
  for (const auto& row : rows) out += line(row, true);
  return out;
}

std::string render_op_bench(const std::vector<BenchRecord>& records, const std::string& format) {
  if (format != "md") return render_bench(records, format, "");
  std::string out;
  auto table = [&](const std::string& op, const std::vector<std::pair<std::string, std::string>>& shape_columns) {
    std::vector<const BenchRecord*> rows;
    for (const BenchRecord& r : records) {
      if (text(r, "op") == op) rows.push_back(&r);
    }
    if (rows.empty()) return;
    std::vector<std::string> header = {"device"};
    for (const auto& column : shape_columns) header.push_back(column.second);
    for (const char* h : {"µs", "GB/s", "% BW", "GFLOP/s", "% FLOP"}) header.emplace_back(h);
    std::vector<std::vector<std::string>> cells;
    for (const BenchRecord* r : rows) {
      std::vector<std::string> row = {text(*r, "device")};
      for (const auto& column : shape_columns) row.push_back(text(*r, column.first.c_str()));
      row.push_back(fmt::format("{:.1f} ± {:.1f}", number(*r, "avg_us"), number(*r, "stddev_us")));
      row.push_back(fmt::format("{:.2f}", number(*r, "gb_s")));
      row.push_back(percent(*r, "bandwidth_percent"));
      row.push_back(fmt::format("{:.1f}", number(*r, "gflop_s")));
      row.push_back(percent(*r, "compute_percent"));
      cells.push_back(std::move(row));
    }
    out += "| " + fmt::format("{}", fmt::join(header, " | ")) + " |\n|";
    for (size_t i = 0; i < header.size(); ++i) out += i == 0 || i <= shape_columns.size() ? " --- |" : " ---: |";
    out += "\n";
    for (const auto& row : cells) out += "| " + fmt::format("{}", fmt::join(row, " | ")) + " |\n";
    out += "\n";
  };
  table("matmul", {{"dtype", "type"}, {"rows", "rows"}, {"cols", "cols"}, {"batch", "batch"}});
  table("attention", {{"kind", "attention"}, {"context", "context"}, {"n_head", "heads"}, {"n_head_kv", "kv heads"},
                      {"head_dim", "head dim"}});
  if (!records.empty()) {
    out += fmt::format("Peaks: {:.2f} GB/s ({}); {:.1f} GFLOP/s ({}).\n", number(records.front(), "peak_gb_s"),
                       text(records.front(), "peak_gb_s_source"), number(records.front(), "peak_gflop_s"),
                       text(records.front(), "peak_gflop_s_source"));
  }
  return out;
}

std::vector<nlohmann::json> read_bench_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("--compare {}: cannot open", path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string content = buffer.str();
  std::vector<nlohmann::json> records;
  // A JSON array (llama-bench -o json, ours -o json), else JSON lines (-o jsonl).
  nlohmann::json whole = nlohmann::json::parse(content, nullptr, /*allow_exceptions=*/false);
  if (whole.is_array()) {
    for (auto& r : whole) {
      if (r.is_object()) records.push_back(std::move(r));
    }
  } else if (whole.is_object()) {
    records.push_back(std::move(whole));
  } else {
    std::istringstream lines(content);
    int line_number = 0;
    for (std::string line; std::getline(lines, line);) {
      ++line_number;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json r = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!r.is_object()) fail("--compare {}: line {} is not a JSON object (the file is neither JSON nor JSON lines)", path,
                               line_number);
      records.push_back(std::move(r));
    }
  }
  const auto usable = std::count_if(records.begin(), records.end(), [](const nlohmann::json& r) {
    return r.contains("avg_ts") && r["avg_ts"].is_number() && r.contains("n_prompt") && r.contains("n_gen");
  });
  if (usable == 0) fail("--compare {}: no benchmark records (objects with n_prompt, n_gen and avg_ts)", path);
  return records;
}

int attach_comparison(std::vector<BenchRecord>& records, const std::vector<nlohmann::json>& earlier) {
  int matched = 0;
  for (BenchRecord& r : records) {
    for (const nlohmann::json& e : earlier) {
      if (!e.contains("avg_ts") || !e["avg_ts"].is_number()) continue;
      const bool same = basename_of(text(r, "model_filename")) == basename_of(e.value("model_filename", "")) &&
                        int_field(r, "n_prompt", 0) == int_field(e, "n_prompt", -1) &&
                        int_field(r, "n_gen", 0) == int_field(e, "n_gen", -1) &&
                        int_field(r, "n_depth", 0) == int_field(e, "n_depth", 0) &&
                        int_field(r, "n_threads", 0) == int_field(e, "n_threads", int_field(r, "n_threads", 0)) &&
                        int_field(r, "n_parallel", 1) == int_field(e, "n_parallel", 1) &&
                        (!e.contains("type_k") || text(r, "type_k") == e["type_k"].get<std::string>());
      if (!same) continue;
      const double theirs = e["avg_ts"].get<double>();
      r["compare_ts"] = theirs;
      r["compare_ratio"] = theirs > 0 ? number(r, "avg_ts") / theirs : 0.0;
      ++matched;
      break;
    }
  }
  return matched;
}

std::string render_bench_svg(const std::vector<BenchRecord>& records, const std::string& x_field,
                             const std::vector<std::string>& series_fields) {
  struct Point {
    double x, y, roofline;
  };
  std::map<std::string, std::vector<Point>> series;  // label -> points
  for (const BenchRecord& r : records) {
    std::string label;
    for (const std::string& field : series_fields) {
      if (field == x_field) continue;
      if (!label.empty()) label += ", ";
      label += field == "test" ? test_kind(r, x_field) : field + "=" + text(r, field.c_str());
    }
    if (label.empty()) label = "tokens/s";
    series[label].push_back(Point{number(r, x_field.c_str()), number(r, "avg_ts"), number(r, "bandwidth_percent")});
  }
  double x_min = INFINITY, x_max = -INFINITY, y_max = 0;
  for (auto& [label, points] : series) {
    std::sort(points.begin(), points.end(), [](const Point& a, const Point& b) { return a.x < b.x; });
    for (const Point& p : points) {
      x_min = std::min(x_min, p.x);
      x_max = std::max(x_max, p.x);
      y_max = std::max(y_max, p.y);
    }
  }
  if (series.empty()) fail("--plot: no results to draw");
  if (x_max <= x_min) x_max = x_min + 1;
  if (y_max <= 0) y_max = 1;
  // A logarithmic x axis when the values span a factor of 8 or more (powers of two sweeps).
  const bool log_x = x_min > 0 && x_max / x_min >= 8;
  const double width = 860, height = 520, left = 90, right = 260, top = 50, bottom = 70;
  const double plot_w = width - left - right, plot_h = height - top - bottom;
  auto sx = [&](double x) {
    const double t = log_x ? (std::log(x) - std::log(x_min)) / (std::log(x_max) - std::log(x_min))
                           : (x - x_min) / (x_max - x_min);
    return left + t * plot_w;
  };
  const double y_top = y_max * 1.1;
  auto sy = [&](double y) { return top + plot_h - y / y_top * plot_h; };
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"28\" font-size=\"16\">pagedllm bench: tokens/s by {3} (labels: % of the bandwidth "
      "roofline)</text>\n",
      width, height, left, x_field);
  // Axes, gridlines and ticks.
  svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"black\"/>\n", left, top, top + plot_h);
  svg += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/>\n", left, top + plot_h,
                     left + plot_w);
  for (int i = 0; i <= 5; ++i) {
    const double y = y_top * i / 5;
    svg += fmt::format("<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>"
                       "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5:.4g}</text>\n",
                       left, sy(y), left + plot_w, left - 6, sy(y) + 4, y);
  }
  std::set<double> ticks;
  for (const auto& [label, points] : series) {
    for (const Point& p : points) ticks.insert(p.x);
  }
  for (double x : ticks) {
    svg += fmt::format("<line x1=\"{0:.1f}\" y1=\"{1}\" x2=\"{0:.1f}\" y2=\"{2}\" stroke=\"black\"/>"
                       "<text x=\"{0:.1f}\" y=\"{3}\" text-anchor=\"middle\">{4:.6g}</text>\n",
                       sx(x), top + plot_h, top + plot_h + 5, top + plot_h + 20, x);
  }
  svg += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}{}</text>\n", left + plot_w / 2,
                     height - 25, x_field, log_x ? " (log scale)" : "");
  svg += fmt::format("<text x=\"20\" y=\"{0}\" transform=\"rotate(-90 20 {0})\" text-anchor=\"middle\">tokens/s"
                     "</text>\n", top + plot_h / 2);
  int index = 0;
  for (const auto& [label, points] : series) {
    const char* color = colors[index % 8];
    std::string xs, ys, line_points;
    for (const Point& p : points) {
      if (!xs.empty()) {
        xs += ',';
        ys += ',';
      }
      xs += fmt::format("{:.6g}", p.x);
      ys += fmt::format("{:.6g}", p.y);
      line_points += fmt::format("{:.1f},{:.1f} ", sx(p.x), sy(p.y));
    }
    std::string escaped;
    for (char c : label) {
      if (c == '&') escaped += "&amp;";
      else if (c == '<') escaped += "&lt;";
      else if (c == '>') escaped += "&gt;";
      else if (c == '"') escaped += "&quot;";
      else escaped += c;
    }
    svg += fmt::format("<g class=\"series\" data-label=\"{}\" data-x=\"{}\" data-y=\"{}\">\n", escaped, xs, ys);
    svg += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>\n", color, line_points);
    for (const Point& p : points) {
      svg += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" fill=\"{}\"><title>{}: {:.6g} tokens/s at "
                         "{} {:.6g}</title></circle>", sx(p.x), sy(p.y), color, escaped, p.y, x_field, p.x);
      if (p.roofline > 0) {
        svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" font-size=\"10\" fill=\"{}\">{:.0f}%</text>", sx(p.x) + 5,
                           sy(p.y) - 6, color, p.roofline);
      }
      svg += "\n";
    }
    svg += "</g>\n";
    const double legend_y = top + 10 + 18.0 * index;
    svg += fmt::format("<rect x=\"{}\" y=\"{:.1f}\" width=\"14\" height=\"4\" fill=\"{}\"/><text x=\"{}\" y=\"{:.1f}\">{}"
                       "</text>\n", left + plot_w + 15, legend_y - 4, color, left + plot_w + 35, legend_y, escaped);
    ++index;
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace pagedllm::cli
