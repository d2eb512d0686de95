// `pagedllm info`: what a GGUF file holds (metadata, config, tensors) and which GPUs this build can use.
#include <cstdio>
#include <map>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "common/error.h"
#include "engine/devices.h"
#include "model_loader/gguf.h"
#include "model_loader/model_config.h"
#include "tensor/kv_dtype.h"

namespace pagedllm::cli {
namespace {

struct InfoOptions {
  std::string model_path;
  bool list_tensors = false;
  bool json = false;
  bool devices = false;
};

std::string human_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024.0 && unit < 4) {
    value /= 1024.0;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.2f} {}", value, units[unit]);
}

nlohmann::json value_to_json(const GgufValue& value) {
  switch (value.type) {
    case GgufValueType::STRING: return value.string;
    case GgufValueType::BOOL: return value.boolean;
    case GgufValueType::FLOAT32: case GgufValueType::FLOAT64: return value.real;
    case GgufValueType::UINT64: return static_cast<uint64_t>(value.integer);
    case GgufValueType::ARRAY: {
      // Vocabulary-sized arrays would drown the output: summarise them.
      const GgufArray& a = *value.array;
      if (a.items.size() > 64) {
        return nlohmann::json{{"type", "array"}, {"element_type", value_type_name(a.elem_type)},
                              {"length", a.items.size()}};
      }
      nlohmann::json arr = nlohmann::json::array();
      for (const GgufValue& item : a.items) arr.push_back(value_to_json(item));
      return arr;
    }
    default: return value.integer;
  }
}

nlohmann::json config_to_json(const ModelConfig& c) {
  return {{"architecture", c.architecture}, {"n_vocab", c.n_vocab}, {"n_embd", c.n_embd},
          {"n_layer", c.n_layer}, {"n_head", c.n_head}, {"n_head_kv", c.n_head_kv}, {"head_dim", c.head_dim},
          {"n_ff", c.n_ff}, {"context_length", c.n_ctx_train}, {"n_rot", c.n_rot},
          {"rope_layout", c.rope_layout == RopeLayout::Norm ? "norm" : "neox"},
          {"rope_freq_base", c.rope_freq_base}, {"rope_freq_scale", c.rope_freq_scale},
          {"rope_scaling", c.rope_scaling == RopeScaling::None ? "none"
                           : c.rope_scaling == RopeScaling::Linear ? "linear" : "yarn"},
          {"rope_freqs", c.has_rope_freqs}, {"rms_eps", c.rms_eps}, {"tied_embeddings", c.tied_embeddings},
          {"qkv_bias", c.has_qkv_bias}, {"qk_norm", c.has_qk_norm},
          {"sliding_window", c.sliding_window}, {"sliding_window_pattern", c.sliding_window_pattern},
          {"rope_freq_base_swa", c.rope_freq_base_swa}, {"post_norms", c.has_post_norms},
          {"ffn_activation", c.ffn_activation == FfnActivation::GeluTanh ? "gelu_tanh" : "silu"},
          {"embedding_scale", c.embedding_scale}, {"attention_scale", c.attention_scale}};
}

void print_devices(bool as_json) {
  std::string why_none;
  const auto devices = list_gpu_devices(why_none);
  if (as_json) {
    nlohmann::json out = {{"cuda_compiled_in", gpu_backend_compiled_in()}, {"devices", nlohmann::json::array()}};
    for (const auto& d : devices) {
      out["devices"].push_back({{"index", d.index}, {"name", d.name},
                                {"compute_capability", fmt::format("{}.{}", d.compute_major, d.compute_minor)},
                                {"multiprocessors", d.multiprocessors}, {"memory_bytes", d.total_memory_bytes},
                                {"free_memory_bytes", d.free_memory_bytes},
                                {"peak_bandwidth_gb_s", d.peak_bandwidth_gb_s}});
    }
    if (devices.empty()) out["reason"] = why_none;
    fmt::print("{}\n", out.dump(2));
    return;
  }
  if (devices.empty()) {
    fmt::print("GPU devices: none ({})\n", why_none);
    return;
  }
  for (const auto& d : devices) {
    fmt::print("GPU {}: {} (compute {}.{}), {} SMs, memory {} ({} free), bus {} bit at {} MHz, peak bandwidth "
               "{:.0f} GB/s\n", d.index, d.name, d.compute_major, d.compute_minor, d.multiprocessors,
               human_bytes(d.total_memory_bytes), human_bytes(d.free_memory_bytes), d.memory_bus_width_bits,
               d.memory_clock_khz / 1000, d.peak_bandwidth_gb_s);
  }
}

void run_info(const InfoOptions& options) {
  if (options.model_path.empty()) {
    if (!options.devices) fail("info needs -m FILE (a GGUF model) or --devices");
    print_devices(options.json);
    return;
  }
  auto file = GgufFile::open(options.model_path);
  std::optional<ModelConfig> config;
  std::string config_error;
  try {
    config = read_model_config(*file);
  } catch (const Error& e) {
    config_error = e.what();
  }

  uint64_t parameters = 0, tensor_bytes = 0;
  std::map<std::string, std::pair<int, uint64_t>> by_type;  // dtype -> (tensor count, bytes)
  for (const auto& t : file->tensors()) {
    parameters += static_cast<uint64_t>(t.n_elements());
    tensor_bytes += t.n_bytes;
    auto& entry = by_type[std::string(type_name(t.type))];
    entry.first += 1;
    entry.second += t.n_bytes;
  }
  const std::string tokenizer_model = file->has("tokenizer.ggml.model")
                                          ? file->find_string("tokenizer.ggml.model").value_or("")
                                          : "";
  const GgufArray* tokens = file->has("tokenizer.ggml.tokens") ? file->find_array("tokenizer.ggml.tokens") : nullptr;
  const bool has_template = file->has("tokenizer.chat_template");
  const std::string architecture = file->has("general.architecture")
                                       ? file->find_string("general.architecture").value_or("")
                                       : "";

  if (options.json) {
    nlohmann::json out;
    out["file"] = options.model_path;
    out["gguf_version"] = file->version();
    out["file_size"] = file->file_size();
    out["alignment"] = file->alignment();
    out["architecture"] = architecture;
    out["parameters"] = parameters;
    out["tensor_count"] = file->tensors().size();
    out["tensor_bytes"] = tensor_bytes;
    for (const auto& [name, entry] : by_type) {
      out["dtypes"][name] = {{"tensors", entry.first}, {"bytes", entry.second}};
    }
    if (config) out["config"] = config_to_json(*config);
    else out["config_error"] = config_error;
    out["tokenizer"] = {{"model", tokenizer_model}, {"vocab_size", tokens ? tokens->items.size() : 0},
                        {"pre", file->has("tokenizer.ggml.pre")
                                    ? file->find_string("tokenizer.ggml.pre").value_or("") : ""}};
    out["chat_template"] = has_template;
    nlohmann::json metadata = nlohmann::json::object();
    for (const auto& [key, value] : file->metadata()) metadata[key] = value_to_json(value);
    out["metadata"] = metadata;
    if (options.list_tensors) {
      out["tensors"] = nlohmann::json::array();
      for (const auto& t : file->tensors()) {
        out["tensors"].push_back({{"name", t.name}, {"shape", std::vector<int64_t>(t.ne, t.ne + t.n_dims)},
                                  {"dtype", type_name(t.type)}, {"offset", t.offset}, {"bytes", t.n_bytes}});
      }
    }
    fmt::print("{}\n", out.dump(2));
    if (options.devices) print_devices(true);
    return;
  }

  fmt::print("file:            {}\n", options.model_path);
  fmt::print("format:          GGUF v{}, {} ({} bytes), alignment {}\n", file->version(),
             human_bytes(file->file_size()), file->file_size(), file->alignment());
  fmt::print("architecture:    {}\n", architecture.empty() ? "(none)" : architecture);
  if (config && !config->name.empty()) fmt::print("name:            {}\n", config->name);
  fmt::print("parameters:      {} ({:.2f} M)\n", parameters, parameters / 1e6);
  fmt::print("tensors:         {} totalling {}\n", file->tensors().size(), human_bytes(tensor_bytes));
  for (const auto& [name, entry] : by_type) {
    fmt::print("  {:<8} {:>5} tensors  {:>12}\n", name, entry.first, human_bytes(entry.second));
  }
  if (config) {
    const ModelConfig& c = *config;
    fmt::print("config:\n");
    fmt::print("  n_vocab {}  n_embd {}  n_layer {}  n_ff {}\n", c.n_vocab, c.n_embd, c.n_layer, c.n_ff);
    fmt::print("  n_head {}  n_head_kv {}  head_dim {}  ({})\n", c.n_head, c.n_head_kv, c.head_dim,
               c.n_head_kv == c.n_head ? "MHA" : c.n_head_kv == 1 ? "MQA" : fmt::format("GQA {}:1", c.n_gqa()));
    fmt::print("  context_length {}  rms_eps {}\n", c.n_ctx_train, c.rms_eps);
    fmt::print("  rope: {} layout, freq_base {}, scaling {}{}{}\n",
               c.rope_layout == RopeLayout::Norm ? "norm" : "neox", c.rope_freq_base,
               c.rope_scaling == RopeScaling::None ? "none" : c.rope_scaling == RopeScaling::Linear ? "linear" : "yarn",
               c.rope_scaling == RopeScaling::None ? "" : fmt::format(" (freq_scale {})", c.rope_freq_scale),
               c.has_rope_freqs ? ", rope_freqs factors" : "");
    fmt::print("  attention: q/k/v bias {}, per-head q/k RMSNorm {}\n", c.has_qkv_bias ? "yes" : "no",
               c.has_qk_norm ? "yes (before RoPE)" : "no");
    if (c.sliding_window > 0) {
      int64_t global = 0;
      for (int64_t layer = 0; layer < c.n_layer; ++layer) global += c.layer_window(layer) == 0 ? 1 : 0;
      fmt::print("  sliding window: {} keys in {} of {} layers (RoPE base {}), the other {} global\n",
                 c.sliding_window, c.n_layer - global, c.n_layer, c.rope_freq_base_swa, global);
    }
    if (c.has_post_norms || c.ffn_activation != FfnActivation::Silu || c.embedding_scale != 1.0f) {
      fmt::print("  gemma: embeddings x {:.4g}, {} FFN, post-attention/post-FFN norms {}\n", c.embedding_scale,
                 c.ffn_activation == FfnActivation::GeluTanh ? "GELU (tanh) gated" : "SwiGLU",
                 c.has_post_norms ? "yes" : "no");
    }
    fmt::print("  embeddings: {}\n", c.tied_embeddings ? "tied (output uses token_embd.weight)" : "separate output.weight");
    // Per --kv-type: a K and a V row per layer and KV head (quantized types only where heads are whole blocks).
    std::string per_type;
    for (KvDtype dtype : {KvDtype::F16, KvDtype::F32, KvDtype::Q8_0, KvDtype::Q4_0}) {
      if (c.head_dim % kv_dtype_block_elements(dtype) != 0) continue;
      const uint64_t bytes = 2 * static_cast<uint64_t>(c.n_layer) * static_cast<uint64_t>(c.n_head_kv) *
                             kv_row_bytes(dtype, static_cast<int>(c.head_dim));
      per_type += fmt::format("{}{} {}", per_type.empty() ? "" : ", ", kv_dtype_name(dtype), human_bytes(bytes));
    }
    fmt::print("  KV cache per token: {}\n", per_type);
  } else {
    fmt::print("config:          unavailable: {}\n", config_error);
  }
  fmt::print("tokenizer:       {} vocabulary of {} tokens{}\n", tokenizer_model.empty() ? "(none)" : tokenizer_model,
             tokens ? tokens->items.size() : 0,
             file->has("tokenizer.ggml.pre") ? ", pre-tokenizer " + file->find_string("tokenizer.ggml.pre").value_or("")
                                             : "");
  fmt::print("chat template:   {}\n", has_template ? "present" : "absent");
  if (options.list_tensors) {
    fmt::print("\n{:<40} {:<22} {:<7} {:>12} {:>12}\n", "name", "shape", "dtype", "offset", "bytes");
    for (const auto& t : file->tensors()) {
      fmt::print("{:<40} {:<22} {:<7} {:>12} {:>12}\n", t.name, t.shape_string(), type_name(t.type), t.offset,
                 t.n_bytes);
    }
  }
  if (options.devices) print_devices(false);
}

}  // namespace

void add_info_command(CLI::App& app) {
  auto options = std::make_shared<InfoOptions>();
  CLI::App* cmd = app.add_subcommand("info", "Describe a GGUF model file (config, tensors, tokenizer) and GPUs");
  cmd->add_option("-m,--model", options->model_path, "GGUF model file");
  cmd->add_flag("--tensors", options->list_tensors, "List every tensor: name, shape, dtype, offset");
  cmd->add_flag("--json", options->json, "Print one JSON object instead of text");
  cmd->add_flag("--devices", options->devices, "List the CUDA devices this build can use");
  cmd->callback([options] { run_info(*options); });
}

}  // namespace pagedllm::cli
