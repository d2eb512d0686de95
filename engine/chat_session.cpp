#include "engine/chat_session.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "common/error.h"
#include "templates/chat_template.h"

namespace pagedllm {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

bool stop_requested(const ChatEvents& events) {
  return events.stop != nullptr && events.stop->load(std::memory_order_relaxed);
}

// Index of the first message that may be dropped: everything but a leading system prompt.
size_t first_droppable(const std::vector<ChatMessage>& messages) {
  return !messages.empty() && messages.front().role == "system" ? 1 : 0;
}

}  // namespace

ChatSession::ChatSession(Engine& engine, const Tokenizer& tokenizer, ChatSessionOptions options)
    : engine_(engine), tokenizer_(tokenizer), options_(std::move(options)) {
  validate_sampling_params(options_.sampling);
  if (options_.batch_tokens < 1) fail("chat: prompt tokens per prefill forward must be positive, got {}",
                                      options_.batch_tokens);
  if (options_.max_answer_tokens == 0 || options_.max_answer_tokens < -1) {
    fail("chat: the most tokens per answer must be positive (or -1 for no limit), got {}", options_.max_answer_tokens);
  }
  template_ = std::make_unique<ChatTemplate>(options_.template_source);
  sampler_ = std::make_unique<Sampler>(options_.sampling);
  seq_ = engine_.cache().create_sequence();
}

ChatSession::~ChatSession() {
  if (engine_.cache().has_sequence(seq_)) engine_.cache().release(seq_);
}

int ChatSession::capacity() const {
  const KvCacheManager& cache = engine_.cache();
  // With prefix caching a rewind into a registered block needs one spare block for its copy.
  const int blocks = cache.num_blocks() - (cache.prefix_caching() ? 1 : 0);
  const int64_t pool_tokens = static_cast<int64_t>(std::max(blocks, 0)) * cache.block_size();
  return static_cast<int>(std::min<int64_t>(engine_.n_ctx(), pool_tokens));
}

int ChatSession::answer_reserve() const {
  const int cap = capacity();
  int reserve = options_.answer_reserve;
  if (reserve <= 0) {
    const int wanted = options_.max_answer_tokens > 0 ? options_.max_answer_tokens : 256;
    reserve = std::min(wanted, cap / 4);
  }
  return std::clamp(reserve, 1, std::max(1, cap - 1));
}

// ------------------------------------------------------------------------------------------------ conversation

void ChatSession::reset() {
  std::vector<ChatMessage> kept;
  if (auto system = system_prompt()) kept.push_back({"system", *system});
  messages_ = std::move(kept);
  last_answer_tokens_.clear();
  last_turn_ = {};
}

void ChatSession::set_system_prompt(std::string text) {
  const bool has_system = first_droppable(messages_) == 1;
  if (text.empty()) {
    if (has_system) messages_.erase(messages_.begin());
  } else if (has_system) {
    messages_.front().content = std::move(text);
  } else {
    messages_.insert(messages_.begin(), ChatMessage{"system", std::move(text)});
  }
}

std::optional<std::string> ChatSession::system_prompt() const {
  if (first_droppable(messages_) == 1) return messages_.front().content;
  return std::nullopt;
}

void ChatSession::set_messages(std::vector<ChatMessage> messages) {
  for (size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].role.empty()) fail("message {} has an empty role", i + 1);
  }
  messages_ = std::move(messages);
  last_answer_tokens_.clear();
  last_turn_ = {};
}

nlohmann::json ChatSession::to_json() const {
  nlohmann::json list = nlohmann::json::array();
  for (const ChatMessage& m : messages_) list.push_back({{"role", m.role}, {"content", m.content}});
  return {{"messages", std::move(list)}};
}

std::vector<ChatMessage> ChatSession::messages_from_json(const nlohmann::json& conversation) {
  const nlohmann::json* list = &conversation;
  if (conversation.is_object()) {
    auto it = conversation.find("messages");
    if (it == conversation.end()) fail("the conversation object has no \"messages\" array");
    list = &*it;
  }
  if (!list->is_array()) {
    fail("a conversation is a JSON array of {{\"role\", \"content\"}} objects (or an object with such a \"messages\" "
         "array), not {}", list->type_name());
  }
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < list->size(); ++i) {
    const nlohmann::json& entry = (*list)[i];
    if (!entry.is_object()) fail("message {} is a JSON {}, not an object with \"role\" and \"content\"", i + 1,
                                 entry.type_name());
    auto role = entry.find("role");
    auto content = entry.find("content");
    if (role == entry.end() || !role->is_string() || role->get_ref<const std::string&>().empty()) {
      fail("message {} needs a non-empty string \"role\"", i + 1);
    }
    if (content == entry.end() || !content->is_string()) fail("message {} needs a string \"content\"", i + 1);
    messages.push_back({role->get<std::string>(), content->get<std::string>()});
  }
  return messages;
}

void ChatSession::set_sampling(const SamplingParams& params) {
  validate_sampling_params(params);
  options_.sampling = params;
  sampler_ = std::make_unique<Sampler>(params);
}

// ------------------------------------------------------------------------------------------------ prompt

std::string ChatSession::render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  ChatTemplateInputs inputs;
  for (const ChatMessage& m : messages) inputs.messages.push_back({{"role", m.role}, {"content", m.content}});
  inputs.add_generation_prompt = add_generation_prompt;
  inputs.bos_token = options_.bos_token;
  inputs.eos_token = options_.eos_token;
  return template_->render(inputs);
}

std::vector<int32_t> ChatSession::tokenize_prompt(const std::string& rendered) const {
  std::vector<int32_t> tokens = tokenizer_.encode(rendered, /*add_special=*/true, /*parse_special=*/true);
  // A template that writes bos_token itself, for a model that also adds one, would start with two.
  const int32_t bos = tokenizer_.bos_id();
  if (bos >= 0 && tokens.size() >= 2 && tokens[0] == bos && tokens[1] == bos) tokens.erase(tokens.begin());
  if (tokens.empty()) fail("the chat template rendered an empty prompt");
  return tokens;
}

std::vector<int32_t> ChatSession::fit_to_context(std::vector<ChatMessage>& messages, int& dropped) const {
  dropped = 0;
  const int cap = capacity();
  const int limit = cap - answer_reserve();
  std::vector<int32_t> tokens = tokenize_prompt(render(messages, /*add_generation_prompt=*/true));
  if (static_cast<int>(tokens.size()) <= limit) return tokens;
  // Once the whole conversation has to be prefilled again anyway, make room for a few more turns too, so that the
  // next ones reuse the cache instead of each dropping one exchange and prefilling everything once more.
  const int target = limit - cap / 4;
  while (true) {
    const size_t first = first_droppable(messages);
    // The newest message (the one being answered) is never dropped.
    if (messages.size() <= first + 1) {
      if (static_cast<int>(tokens.size()) <= limit) return tokens;
      fail("the message does not fit the context: the prompt is {} tokens{} and the context holds {} with {} kept "
           "free for the answer (raise -c or shorten the message)", tokens.size(),
           first == 1 ? " with the system prompt" : "", cap, cap - limit);
    }
    // Drop the oldest exchange: its first message and everything up to the next user message.
    size_t end = first + 1;
    while (end + 1 < messages.size() && messages[end].role != "user") ++end;
    dropped += static_cast<int>(end - first);
    messages.erase(messages.begin() + static_cast<std::ptrdiff_t>(first),
                   messages.begin() + static_cast<std::ptrdiff_t>(end));
    tokens = tokenize_prompt(render(messages, /*add_generation_prompt=*/true));
    if (static_cast<int>(tokens.size()) <= target) return tokens;
  }
}

// ------------------------------------------------------------------------------------------------ turns

ChatTurnStats ChatSession::generate(const std::vector<int32_t>& prompt, const ChatEvents& events,
                                    std::string& answer) {
  KvCacheManager& cache = engine_.cache();
  ChatTurnStats st;
  st.prompt_tokens = static_cast<int>(prompt.size());
  last_answer_tokens_.clear();

  // Reuse the longest common token prefix; the last prompt token is always computed, for its logits.
  size_t common = 0;
  const size_t comparable = std::min(cached_tokens_.size(), prompt.size());
  while (common < comparable && cached_tokens_[common] == prompt[common]) ++common;
  if (common == prompt.size()) --common;
  cache.truncate(seq_, static_cast<int>(common));
  cached_tokens_.resize(common);
  st.reused_tokens = static_cast<int>(common);
  st.prefilled_tokens = static_cast<int>(prompt.size() - common);
  if (!cache.can_append(seq_, st.prefilled_tokens)) {
    fail("the KV cache has {} free blocks of {} tokens, too few for the {} prompt tokens to prefill (raise --kv-mem)",
         cache.free_blocks(), cache.block_size(), st.prefilled_tokens);
  }

  const auto start = Clock::now();
  std::span<const float> logits;
  for (size_t begin = common; begin < prompt.size(); begin += static_cast<size_t>(options_.batch_tokens)) {
    if (stop_requested(events)) {
      st.finish_reason = "interrupted";
      st.prefill_seconds = seconds_since(start);
      return st;
    }
    const size_t end = std::min(prompt.size(), begin + static_cast<size_t>(options_.batch_tokens));
    const Engine::Work work{seq_, std::span<const int32_t>(prompt).subspan(begin, end - begin), end == prompt.size()};
    logits = engine_.step(std::span<const Engine::Work>(&work, 1));
    cached_tokens_.insert(cached_tokens_.end(), prompt.begin() + static_cast<std::ptrdiff_t>(begin),
                          prompt.begin() + static_cast<std::ptrdiff_t>(end));
  }
  st.prefill_seconds = seconds_since(start);

  const int cap = capacity();
  std::vector<int32_t> history = prompt;  // [prompt + generated] what the repetition penalty looks at
  StreamingDetokenizer detokenizer(tokenizer_);
  auto emit = [&](const std::string& piece) {
    answer += piece;
    if (!piece.empty() && events.on_text) events.on_text(piece);
  };
  const auto generation_start = Clock::now();
  while (true) {
    // Checked once the forward is done: whatever was asked for during it, nothing more is shown.
    if (stop_requested(events)) {
      st.finish_reason = "interrupted";
      break;
    }
    const int32_t token = sampler_->sample(logits, history);
    if (last_answer_tokens_.empty()) st.time_to_first_token = seconds_since(start);
    if (tokenizer_.is_end_of_generation(token)) {
      st.finish_reason = "stop";
      break;
    }
    last_answer_tokens_.push_back(token);
    history.push_back(token);
    emit(detokenizer.push(token));
    if (options_.max_answer_tokens > 0 && static_cast<int>(last_answer_tokens_.size()) >= options_.max_answer_tokens) {
      st.finish_reason = "length";
      break;
    }
    if (static_cast<int>(cached_tokens_.size()) + 1 > cap || !cache.can_append(seq_, 1)) {
      st.finish_reason = "context";
      break;
    }
    const Engine::Work work{seq_, std::span<const int32_t>(&token, 1), true};
    logits = engine_.step(std::span<const Engine::Work>(&work, 1));
    cached_tokens_.push_back(token);
  }
  emit(detokenizer.flush());
  st.generation_seconds = seconds_since(generation_start);
  st.generated_tokens = static_cast<int>(last_answer_tokens_.size());
  return st;
}

ChatTurnStats ChatSession::reply(std::string user_text, const ChatEvents& events) {
  std::vector<ChatMessage> conversation = messages_;
  conversation.push_back({"user", std::move(user_text)});
  return answer(std::move(conversation), events);
}

ChatTurnStats ChatSession::regenerate(const ChatEvents& events) {
  if (messages_.empty() || messages_.back().role != "assistant") {
    fail("there is no answer to regenerate: the conversation does not end with an assistant message");
  }
  return answer(std::vector<ChatMessage>(messages_.begin(), messages_.end() - 1), events);
}

ChatTurnStats ChatSession::answer(std::vector<ChatMessage> conversation, const ChatEvents& events) {
  int dropped = 0;
  const std::vector<int32_t> prompt = fit_to_context(conversation, dropped);  // throws with nothing changed
  const std::vector<ChatMessage> before = std::exchange(messages_, std::move(conversation));
  if (dropped > 0 && events.on_context_trim) {
    ChatTurnStats trim;
    trim.prompt_tokens = static_cast<int>(prompt.size());
    trim.dropped_messages = dropped;
    events.on_context_trim(trim);
  }
  std::string text;
  ChatTurnStats st;
  try {
    st = generate(prompt, events, text);
  } catch (...) {
    // What the cache holds is unknown after a failed forward: forget it, and the turn.
    engine_.cache().truncate(seq_, 0);
    cached_tokens_.clear();
    messages_ = before;
    throw;
  }
  st.dropped_messages = dropped;
  if (st.finish_reason == "interrupted" && last_answer_tokens_.empty()) {
    messages_ = before;  // stopped before a word: the turn is cancelled (a /regen keeps the previous answer)
  } else {
    messages_.push_back({"assistant", std::move(text)});
  }
  last_turn_ = st;
  return st;
}

}  // namespace pagedllm
