#include "engine/chat_session.h"

#include <algorithm>
#include <cstdint>
#include <chrono>
#include <utility>

#include "common/error.h"
#include "engine/prompt.h"
#include "templates/chat_template.h"

namespace pagedllm {
namespace {

// Index of the first message that may be dropped: everything but a leading system prompt.
size_t first_droppable(const std::vector<ChatMessage>& messages) {
  return !messages.empty() && messages.front().role == "system" ? 1 : 0;
}

}  // namespace

ChatSession::ChatSession(Scheduler& scheduler, const Tokenizer& tokenizer, ChatSessionOptions options)
    : scheduler_(scheduler), tokenizer_(tokenizer), options_(std::move(options)) {
  validate_sampling_params(options_.sampling);
  if (options_.max_answer_tokens == 0 || options_.max_answer_tokens < -1) {
    fail("chat: the most tokens per answer must be positive (or -1 for no limit), got {}", options_.max_answer_tokens);
  }
  template_ = std::make_unique<ChatTemplate>(options_.template_source);
  session_ = scheduler_.open_session();
}

ChatSession::~ChatSession() { scheduler_.close_session(session_); }

int ChatSession::capacity() const {
  const KvCacheManager& cache = scheduler_.cache();
  // A rewind into a shared or registered block needs one spare block for its copy.
  const int blocks = cache.num_blocks() - 1;
  const int64_t pool_tokens = static_cast<int64_t>(std::max(blocks, 1)) * cache.block_size();
  return static_cast<int>(std::min<int64_t>(scheduler_.max_sequence_tokens(), pool_tokens));
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
  std::vector<int32_t> tokens =
      pagedllm::tokenize_prompt(tokenizer_, rendered, PromptSource::ChatTemplate, /*add_bos=*/true, /*parse_special=*/true);
  if (tokens.empty()) fail("the chat template rendered an empty prompt");
  return tokens;
}

std::vector<int32_t> ChatSession::fit_to_context(std::vector<ChatMessage>& messages, int& dropped, int& renders) const {
  dropped = 0;
  renders = 1;
  const int cap = capacity();
  const int limit = cap - answer_reserve();
  std::vector<int32_t> tokens = tokenize_prompt(render(messages, /*add_generation_prompt=*/true));
  if (static_cast<int>(tokens.size()) <= limit) return tokens;
  // Once the whole conversation has to be prefilled again anyway, make room for a few more turns too, so that the
  // next ones reuse the cache instead of each dropping one exchange and prefilling everything once more.
  const int target = limit - cap / 4;

  // Whole exchanges go, oldest first: an exchange runs from a message to the next user message. The conversation
  // kept is the system prompt (if any) and messages[cut..] for one of these cuts; the newest message (the one
  // being answered) always stays.
  const size_t first = first_droppable(messages);
  std::vector<size_t> cuts;  // ascending: keeping from a later cut drops more
  for (size_t i = first + 1; i + 1 < messages.size(); ++i) {
    if (messages[i].role == "user") cuts.push_back(i);
  }
  if (messages.size() > first + 1) cuts.push_back(messages.size() - 1);
  auto kept = [&](size_t cut) {
    std::vector<ChatMessage> rest(messages.begin(), messages.begin() + static_cast<std::ptrdiff_t>(first));
    rest.insert(rest.end(), messages.begin() + static_cast<std::ptrdiff_t>(cut), messages.end());
    return rest;
  };
  auto prompt_for = [&](size_t cut) {
    ++renders;
    return tokenize_prompt(render(kept(cut), /*add_generation_prompt=*/true));
  };
  auto too_long_for_context = [&](size_t n_tokens) {
    fail("the message does not fit the context: the prompt is {} tokens{} and the context holds {} with {} kept free "
         "for the answer (raise -c or shorten the message)", n_tokens, first == 1 ? " with the system prompt" : "",
         cap, cap - limit);
  };
  if (cuts.empty()) too_long_for_context(tokens.size());

  // The latest cut whose kept part reaches the target (the fewest messages dropped). Rendering only what would be
  // kept, and searching from the newest end (one, two, four, ... exchanges, then halving), costs about as much as
  // rendering a context's worth of messages a few times, however long the history: the kept part grows with each
  // probe only until it no longer fits.
  size_t fits = cuts.size() - 1;  // index into cuts of a cut that keeps little enough
  std::vector<int32_t> fitting = prompt_for(cuts[fits]);
  if (static_cast<int>(fitting.size()) > target) {
    // Even the newest message alone overshoots the target: keep it if it fits the limit.
    if (static_cast<int>(fitting.size()) > limit) too_long_for_context(fitting.size());
  } else {
    size_t step = 1;
    size_t too_long = SIZE_MAX;  // an index whose kept part overshoots the target; SIZE_MAX: none found yet
    while (fits > 0) {
      const size_t probe = fits >= step ? fits - step : 0;
      std::vector<int32_t> candidate = prompt_for(cuts[probe]);
      if (static_cast<int>(candidate.size()) > target) {
        too_long = probe;
        break;
      }
      fits = probe;
      fitting = std::move(candidate);
      step *= 2;
    }
    // Between a cut that overshoots and one that fits: halve.
    while (too_long != SIZE_MAX && fits - too_long > 1) {
      const size_t middle = too_long + (fits - too_long) / 2;
      std::vector<int32_t> candidate = prompt_for(cuts[middle]);
      if (static_cast<int>(candidate.size()) > target) {
        too_long = middle;
      } else {
        fits = middle;
        fitting = std::move(candidate);
      }
    }
  }
  dropped = static_cast<int>(cuts[fits] - first);
  messages = kept(cuts[fits]);
  return fitting;
}

// ------------------------------------------------------------------------------------------------ turns

namespace {

// Collects a turn's answer from the scheduler and forwards its text as it comes.
class TurnSink : public TokenSink {
 public:
  explicit TurnSink(const ChatEvents& events) : events_(events) {}
  void on_text(RequestId, int, std::string_view text) override {
    answer += text;
    if (!text.empty() && events_.on_text) events_.on_text(text);
  }
  void on_finish(RequestResult finished) override {
    result = std::move(finished);
    done = true;
  }

  std::string answer;
  RequestResult result;
  bool done = false;

 private:
  const ChatEvents& events_;
};

std::string chat_finish_reason(FinishReason reason) {
  switch (reason) {
    case FinishReason::ContextFull:
    case FinishReason::CacheFull: return "context";
    case FinishReason::Cancelled: return "interrupted";
    default: return std::string(finish_reason_name(reason));
  }
}

}  // namespace

ChatTurnStats ChatSession::generate(const std::vector<int32_t>& prompt, const ChatEvents& events,
                                    std::string& answer) {
  last_answer_tokens_.clear();
  GenerationRequest request;
  request.id = next_request_++;
  request.prompt = prompt;
  request.max_tokens = options_.max_answer_tokens > 0 ? options_.max_answer_tokens : kUnlimitedTokens;
  request.sampling = options_.sampling;
  // Every answer draws from its own stream: reproducible with a fixed seed, different from turn to turn.
  if (request.sampling.seed != kRandomSeed) request.sampling.seed += static_cast<uint64_t>(request.id);
  request.session = session_;
  request.cancel = events.stop;
  TurnSink sink(events);
  scheduler_.submit(std::move(request), &sink);
  scheduler_.run_until_idle();
  if (!sink.done) fail("internal: the scheduler went idle before the answer ended");
  const RequestResult& result = sink.result;
  if (result.failure == FinishReason::Error) fail("{}", result.error);

  ChatTurnStats st;
  st.prompt_tokens = static_cast<int>(prompt.size());
  st.reused_tokens = result.reused_prompt_tokens;
  st.prefilled_tokens = st.prompt_tokens - st.reused_tokens;
  const Completion& completion = result.completions.front();
  last_answer_tokens_ = completion.tokens;
  answer = sink.answer;
  st.generated_tokens = static_cast<int>(completion.tokens.size());
  st.finish_reason = chat_finish_reason(completion.finish);
  st.time_to_first_token = result.first_token_seconds;
  st.prefill_seconds = std::max(0.0, result.first_token_seconds - result.queue_seconds);
  st.generation_seconds = std::max(0.0, result.latency_seconds - result.first_token_seconds);
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
  int dropped = 0, renders = 0;
  const std::vector<int32_t> prompt = fit_to_context(conversation, dropped, renders);  // throws, nothing changed
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
    messages_ = before;  // the turn never happened (the scheduler dropped what a failed forward left in the cache)
    throw;
  }
  st.dropped_messages = dropped;
  st.fit_renders = renders;
  if (st.finish_reason == "interrupted" && last_answer_tokens_.empty()) {
    messages_ = before;  // stopped before a word: the turn is cancelled (a /regen keeps the previous answer)
  } else {
    messages_.push_back({"assistant", std::move(text)});
  }
  last_turn_ = st;
  return st;
}

}  // namespace pagedllm
