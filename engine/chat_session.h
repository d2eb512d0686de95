#pragma once
// A conversation kept in the KV cache. Every turn renders the chat template over the whole conversation, tokenizes
// it, and submits it to the scheduler as a request of the conversation's session: the scheduler compares those
// tokens with the ones whose K/V the session's sequence already holds, reuses the common token prefix, and
// prefills only the rest. Comparing tokens rather than strings matters: a template may re-render an earlier answer
// differently (trimmed, or tokenized along another path), and only identical tokens at identical positions have
// identical K/V.
//
// When the rendered conversation no longer fits the context (with room for an answer), the oldest exchanges are
// dropped, never the system prompt, until it fills at most three quarters of it, and what remains is prefilled again
// from the first token that changed.
//
// The session knows nothing of terminals: the CLI feeds it text and shows what it streams back.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "templates/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace pagedllm {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (a template may know others)
  std::string content;
  bool operator==(const ChatMessage&) const = default;
};

struct ChatSessionOptions {
  std::string template_source;  // Jinja source of the chat template
  std::string bos_token;        // the template's bos_token / eos_token variables
  std::string eos_token;
  SamplingParams sampling;
  int max_answer_tokens = -1;   // per answer; -1: until an end-of-generation token or the context is full
  int answer_reserve = 0;       // context kept free for the answer when fitting; 0: min(max_answer_tokens or 256,
                                // a quarter of the context)
};

// What one turn did. "Reused" tokens were already in the KV cache; "prefilled" ones were computed this turn.
struct ChatTurnStats {
  int prompt_tokens = 0;      // the rendered conversation, generation prompt included
  int reused_tokens = 0;
  int prefilled_tokens = 0;
  int generated_tokens = 0;
  int dropped_messages = 0;   // oldest messages dropped this turn to fit the context
  int fit_renders = 0;        // times the template rendered the conversation to fit it (the work fitting took)
  double prefill_seconds = 0;
  double generation_seconds = 0;
  double time_to_first_token = 0;
  std::string finish_reason;  // "stop" (end-of-generation token), "length", "context", "interrupted"
};

struct ChatEvents {
  std::function<void(std::string_view)> on_text;               // a piece of the answer, as it is generated
  std::function<void(const ChatTurnStats&)> on_context_trim;   // old messages were dropped (before the prefill)
  const std::atomic<bool>* stop = nullptr;                     // checked before every forward; true ends the turn
};

class ChatSession {
 public:
  // The scheduler and tokenizer must outlive the session, which keeps its conversation in a session of the
  // scheduler. Throws pagedllm::Error when the sampling parameters are invalid or the template cannot be parsed.
  ChatSession(Scheduler& scheduler, const Tokenizer& tokenizer, ChatSessionOptions options);
  ~ChatSession();
  ChatSession(const ChatSession&) = delete;
  ChatSession& operator=(const ChatSession&) = delete;

  // Appends the user's message and generates the assistant's answer, which is appended too (also when stopped
  // early). Throws pagedllm::Error, leaving the conversation as it was, when the template fails on the
  // conversation or the message cannot fit the context even alone with the system prompt.
  ChatTurnStats reply(std::string user_text, const ChatEvents& events = {});
  // Replaces the last answer with a new sample from the same prompt, whose K/V is reused. Throws pagedllm::Error
  // when the conversation does not end with an answer.
  ChatTurnStats regenerate(const ChatEvents& events = {});

  // The conversation without its answers' state; the system prompt (if any) is kept. The cached tokens stay until
  // the next turn, which reuses whatever prefix still matches (e.g. the system prompt).
  void reset();
  // Sets (or, with empty text, removes) the system prompt, which is always the first message.
  void set_system_prompt(std::string text);
  std::optional<std::string> system_prompt() const;

  const std::vector<ChatMessage>& messages() const { return messages_; }
  // Replaces the conversation (e.g. loaded from a file); checked like from_json.
  void set_messages(std::vector<ChatMessage> messages);

  // {"messages": [{"role": ..., "content": ...}, ...]}
  nlohmann::json to_json() const;
  // Accepts that object or a bare array of messages. Throws pagedllm::Error naming the first bad entry.
  static std::vector<ChatMessage> messages_from_json(const nlohmann::json& conversation);

  // Replaces the sampling parameters (validated; throws pagedllm::Error). Each answer draws from a sampler seeded
  // afresh with the seed (so a fixed seed gives reproducible answers).
  void set_sampling(const SamplingParams& params);
  const SamplingParams& sampling() const { return options_.sampling; }
  void set_max_answer_tokens(int n) { options_.max_answer_tokens = n; }
  int max_answer_tokens() const { return options_.max_answer_tokens; }

  // The text the template renders for the conversation (add_generation_prompt as given), and its tokens as the
  // session prefills them (special tokens parsed, one BOS). Throw pagedllm::Error when the template fails.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  std::vector<int32_t> tokenize_prompt(const std::string& rendered) const;

  // Tokens whose K/V the conversation's sequence holds, oldest first.
  std::vector<int32_t> cached_tokens() const { return scheduler_.session_tokens(session_); }
  // The tokens of the last answer (without the end-of-generation token).
  const std::vector<int32_t>& last_answer_tokens() const { return last_answer_tokens_; }
  const ChatTurnStats& last_turn() const { return last_turn_; }
  // Most tokens the conversation may occupy: the engine's context, or fewer when the K/V pool is smaller.
  int capacity() const;

 private:
  // When the prompt of `messages` plus the answer reserve does not fit, drops the fewest oldest exchanges that
  // bring it to a quarter of the context to spare (or all but the newest message); returns the prompt's tokens,
  // sets `dropped` to the number of messages removed and `renders` to the template renders it took.
  std::vector<int32_t> fit_to_context(std::vector<ChatMessage>& messages, int& dropped, int& renders) const;
  // Submits `prompt` as a request of the conversation's session (the scheduler reuses the cached common prefix and
  // prefills the rest) and runs it to its end, the answer into last_answer_tokens_ and `answer`.
  ChatTurnStats generate(const std::vector<int32_t>& prompt, const ChatEvents& events, std::string& answer);
  // Fits `conversation` (ending with the message to answer), makes it the conversation and appends the answer.
  ChatTurnStats answer(std::vector<ChatMessage> conversation, const ChatEvents& events);
  int answer_reserve() const;

  Scheduler& scheduler_;
  const Tokenizer& tokenizer_;
  ChatSessionOptions options_;
  SessionId session_;
  RequestId next_request_ = 0;
  std::unique_ptr<ChatTemplate> template_;  // parsed once, rendered every turn
  std::vector<ChatMessage> messages_;
  std::vector<int32_t> last_answer_tokens_;  // [generated] of the last answer
  ChatTurnStats last_turn_;
};

}  // namespace pagedllm
