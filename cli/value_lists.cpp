#include "cli/value_lists.h"

#include <charconv>

#include "common/error.h"

namespace pagedllm::cli {

namespace {

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t end = text.find(separator, start);
    parts.push_back(text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

int64_t parse_number(std::string_view text, std::string_view flag, std::string_view element) {
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) {
    fail("{} '{}': '{}' is not a whole number", flag, element, text);
  }
  return value;
}

}  // namespace

std::vector<int64_t> parse_int_list(std::string_view text, std::string_view flag, int64_t minimum, size_t max_values) {
  if (text.empty()) fail("{}: an empty list", flag);
  std::vector<int64_t> values;
  auto add = [&](int64_t value, std::string_view element) {
    if (value < minimum) fail("{} '{}': {} is below the smallest allowed value, {}", flag, element, value, minimum);
    if (values.size() >= max_values) fail("{} '{}': more than {} values", flag, text, max_values);
    values.push_back(value);
  };
  for (const std::string_view element : split(text, ',')) {
    if (element.empty()) fail("{} '{}': an empty element", flag, text);
    // A dash after the first character separates a range (a leading one would be a sign).
    const size_t dash = element.find('-', 1);
    if (dash == std::string_view::npos) {
      add(parse_number(element, flag, element), element);
      continue;
    }
    const int64_t first = parse_number(element.substr(0, dash), flag, element);
    std::string_view rest = element.substr(dash + 1);
    char op = '+';
    int64_t step = 1;
    if (const size_t at = rest.find_first_of("+*"); at != std::string_view::npos) {
      op = rest[at];
      step = parse_number(rest.substr(at + 1), flag, element);
      rest = rest.substr(0, at);
    }
    const int64_t last = parse_number(rest, flag, element);
    if (last < first) fail("{} '{}': the range runs backwards", flag, element);
    if (op == '+' && step < 1) fail("{} '{}': the step must be at least 1", flag, element);
    if (op == '*' && (step < 2 || first < 1)) {
      fail("{} '{}': a multiplicative step needs a factor of at least 2 and a start of at least 1", flag, element);
    }
    for (int64_t value = first; value <= last;) {
      add(value, element);
      if (op == '+') {
        if (value > INT64_MAX - step) break;
        value += step;
      } else {
        if (value > INT64_MAX / step) break;
        value *= step;
      }
    }
  }
  return values;
}

std::vector<std::string> parse_word_list(std::string_view text, std::string_view flag) {
  std::vector<std::string> words;
  for (const std::string_view part : split(text, ',')) {
    if (part.empty()) fail("{} '{}': an empty element", flag, text);
    words.emplace_back(part);
  }
  return words;
}

}  // namespace pagedllm::cli
