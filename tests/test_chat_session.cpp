// ChatSession: the conversation kept in the KV cache. Each turn reuses the common token prefix with what is
// cached and prefills only the rest; /regen reuses the prompt; a conversation that outgrows the context drops its
// oldest turns but keeps the system prompt; conversations survive a JSON round trip; bad input leaves the
// conversation as it was.
#include <doctest/doctest.h>

#include "required_files.h"

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "direct_runner.h"
#include "engine/chat_session.h"
#include "engine/model.h"
#include "engine/model_runner.h"
#include "engine/scheduler.h"

using namespace pagedllm;

namespace {

const std::string kSmol = PAGEDLLM_SOURCE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
const std::string kStories = PAGEDLLM_SHARED_DIR "/models/stories260K.gguf";

// A plain template for stories260K, which has none; the role names keep turns apart in the token stream.
const std::string kPlainTemplate =
    "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}assistant:"
    "{% endif %}";

SamplingParams greedy() {
  SamplingParams p;
  p.temperature = 0;
  return p;
}

struct Fixture {
  std::unique_ptr<Model> model;
  RunnerConfig config;
  std::unique_ptr<ModelRunner> runner;
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<ChatSession> session;

  Fixture(const std::string& path, int n_ctx, const std::function<ChatSessionOptions(const Model&)>& options) {
    model = Model::load(path);
    config.n_ctx = n_ctx;
    runner = std::make_unique<ModelRunner>(*model, config);
    scheduler = std::make_unique<Scheduler>(*runner, model->tokenizer.get(), SchedulerConfig{});
    session = std::make_unique<ChatSession>(*scheduler, *model->tokenizer, options(*model));
  }
  Fixture(const std::string& path, int n_ctx, const ChatSessionOptions& options)
      : Fixture(path, n_ctx, [&](const Model&) { return options; }) {}
};

ChatSessionOptions smol_options(const Model& model, int max_answer_tokens) {
  ChatSessionOptions o;
  o.template_source = model.tokenizer->chat_template();
  o.sampling = greedy();
  o.max_answer_tokens = max_answer_tokens;
  return o;
}

ChatSessionOptions stories_options(int max_answer_tokens) {
  ChatSessionOptions o;
  o.template_source = kPlainTemplate;
  o.sampling = greedy();
  o.max_answer_tokens = max_answer_tokens;
  o.answer_reserve = max_answer_tokens;
  return o;
}

size_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  size_t n = 0;
  while (n < a.size() && n < b.size() && a[n] == b[n]) ++n;
  return n;
}

// Greedy decoding of `n` tokens after prefilling `prompt` at once into a fresh sequence of a separate model runner
// (stopping at an end-of-generation token): what a one-shot run on the full rendered conversation produces.
std::vector<int32_t> fresh_greedy_run(const Model& model, const RunnerConfig& config, const std::vector<int32_t>& prompt,
                                      int n) {
  const Tokenizer& tokenizer = *model.tokenizer;
  test::DirectRunner engine(model, config);
  const SeqId seq = engine.create_sequence();
  test::DirectWork work{seq, prompt, true};
  std::span<const float> logits = engine.step(std::span(&work, 1));
  std::vector<int32_t> out;
  while (static_cast<int>(out.size()) < n) {
    const auto next = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (tokenizer.is_end_of_generation(next)) break;
    out.push_back(next);
    test::DirectWork step{seq, std::span<const int32_t>(&out.back(), 1), true};
    logits = engine.step(std::span(&step, 1));
  }
  return out;
}

}  // namespace

TEST_CASE("SmolLM2: the second turn prefills only its new tokens and answers as a fresh run on the whole prompt") {
  pagedllm::test::require_smollm2();
  Fixture f(kSmol, 1024, [](const Model& m) { return smol_options(m, 12); });
  ChatSession& chat = *f.session;

  const ChatTurnStats first = chat.reply("What is the capital of France?");
  CHECK(first.reused_tokens == 0);
  CHECK(first.prefilled_tokens == first.prompt_tokens);
  REQUIRE(first.generated_tokens > 0);
  const std::vector<int32_t> cached_after_first = chat.cached_tokens();
  REQUIRE(chat.messages().size() == 2);
  // Every cached token is the prompt's or an answer token the model saw.
  CHECK(static_cast<int>(cached_after_first.size()) >= first.prompt_tokens);

  const ChatTurnStats second = chat.reply("And of Germany?");
  const std::vector<int32_t> prompt = chat.tokenize_prompt(
      chat.render(std::vector<ChatMessage>(chat.messages().begin(), chat.messages().end() - 1), true));
  CHECK(second.prompt_tokens == static_cast<int>(prompt.size()));
  // ChatML renders the earlier turn exactly as it was cached (the answer re-tokenizes to the sampled tokens), so
  // everything cached is reused and only the new turn is prefilled.
  if (common_prefix(cached_after_first, prompt) == cached_after_first.size()) {
    CHECK(second.reused_tokens == static_cast<int>(cached_after_first.size()));
  } else {
    MESSAGE("the first answer re-tokenizes differently; only the common prefix is reused");
    CHECK(second.reused_tokens == static_cast<int>(common_prefix(cached_after_first, prompt)));
  }
  CHECK(second.reused_tokens >= first.prompt_tokens);
  CHECK(second.prefilled_tokens == second.prompt_tokens - second.reused_tokens);
  CHECK(second.prefilled_tokens < second.prompt_tokens / 2);
  CHECK(std::equal(prompt.begin(), prompt.end(), chat.cached_tokens().begin()));

  // The answer equals a one-shot greedy run over the full rendered conversation, in a sequence of its own.
  const std::vector<int32_t> expected = fresh_greedy_run(*f.model, f.config, prompt, 12);
  CHECK(chat.last_answer_tokens() == expected);
  CHECK(f.scheduler->check_invariants() == "");
}

TEST_CASE("SmolLM2: /regen reuses the cached prompt and, greedy, samples the same answer again") {
  pagedllm::test::require_smollm2();
  Fixture f(kSmol, 1024, [](const Model& m) { return smol_options(m, 10); });
  ChatSession& chat = *f.session;
  chat.set_system_prompt("You are a terse assistant.");
  const ChatTurnStats first = chat.reply("Name a color.");
  const std::vector<int32_t> answer = chat.last_answer_tokens();
  const std::vector<ChatMessage> before = chat.messages();

  const ChatTurnStats again = chat.regenerate();
  CHECK(again.prompt_tokens == first.prompt_tokens);
  CHECK(again.reused_tokens == first.prompt_tokens - 1);  // only the last prompt token is computed again
  CHECK(again.prefilled_tokens == 1);
  CHECK(chat.last_answer_tokens() == answer);
  CHECK(chat.messages() == before);
  CHECK(f.scheduler->check_invariants() == "");
}

TEST_CASE("stories260K: turns reuse exactly the common token prefix, even where the template re-renders text") {
  Fixture f(kStories, 512, stories_options(8));
  ChatSession& chat = *f.session;
  const ChatTurnStats first = chat.reply("Once upon a time");
  CHECK(first.reused_tokens == 0);
  std::vector<int32_t> previous = chat.cached_tokens();
  for (const char* text : {"The dog ran.", "Then what?"}) {
    const ChatTurnStats turn = chat.reply(text);
    const std::vector<int32_t> prompt = chat.tokenize_prompt(
        chat.render(std::vector<ChatMessage>(chat.messages().begin(), chat.messages().end() - 1), true));
    // The plain template writes "assistant: " + answer where the answer was generated after "assistant:", so the
    // answer's first token may differ: reuse is the token prefix, not the string prefix.
    CHECK(turn.reused_tokens == static_cast<int>(common_prefix(previous, prompt)));
    CHECK(turn.prefilled_tokens == turn.prompt_tokens - turn.reused_tokens);
    CHECK(turn.reused_tokens > 0);
    previous = chat.cached_tokens();
  }
  CHECK(f.scheduler->check_invariants() == "");
}

TEST_CASE("stories260K: a conversation that outgrows the context drops its oldest turns, never the system prompt") {
  const int n_ctx = 96;
  Fixture f(kStories, n_ctx, stories_options(8));
  ChatSession& chat = *f.session;
  chat.set_system_prompt("Tell a story.");
  int trims = 0;
  ChatEvents events;
  events.on_context_trim = [&](const ChatTurnStats& st) {
    ++trims;
    CHECK(st.dropped_messages > 0);
  };
  int dropped_total = 0;
  size_t longest = 0;
  std::vector<int32_t> previous;
  const std::vector<std::string> names = {"Lily", "Tom", "Sue", "Max", "Ben", "Amy", "Tim", "Sam", "Mia", "Zoe"};
  for (const std::string& name : names) {
    // Distinct turns: identical ones would line up with the cache again after a drop.
    const ChatTurnStats st = chat.reply(name + " went to the park and saw a big red ball.", events);
    dropped_total += st.dropped_messages;
    longest = std::max(longest, chat.messages().size());
    REQUIRE(chat.system_prompt().has_value());
    CHECK(*chat.system_prompt() == "Tell a story.");
    CHECK(chat.messages().front().role == "system");
    CHECK(st.prompt_tokens + 8 <= chat.capacity());
    CHECK(static_cast<int>(chat.cached_tokens().size()) <= chat.capacity());
    if (st.dropped_messages > 0) {
      // The first message after the system prompt is a user message: whole exchanges are dropped.
      CHECK(chat.messages()[1].role == "user");
      // What follows the system prompt moved, so the reuse ends before the first remaining user message does.
      const std::vector<int32_t> head =
          chat.tokenize_prompt(chat.render({chat.messages()[0], chat.messages()[1]}, false));
      CHECK(st.reused_tokens < static_cast<int>(head.size()));
      const std::vector<int32_t> prompt = chat.tokenize_prompt(
          chat.render(std::vector<ChatMessage>(chat.messages().begin(), chat.messages().end() - 1), true));
      CHECK(st.reused_tokens == static_cast<int>(common_prefix(previous, prompt)));
      CHECK(st.prefilled_tokens == st.prompt_tokens - st.reused_tokens);
    }
    previous = chat.cached_tokens();
  }
  CHECK(trims > 0);
  CHECK(dropped_total > 0);
  CHECK(chat.messages().size() < longest + 2);
  CHECK(chat.capacity() == n_ctx);
  CHECK(f.scheduler->check_invariants() == "");
}

TEST_CASE("stories260K: trimming drops the fewest oldest exchanges that leave a quarter of the context free") {
  const int n_ctx = 256;
  const int answer_tokens = 8;
  Fixture f(kStories, n_ctx, stories_options(answer_tokens));
  ChatSession& chat = *f.session;
  // A history far longer than the context, of distinct exchanges, under a system prompt.
  std::vector<ChatMessage> history = {{"system", "Tell a story."}};
  for (int i = 0; i < 40; ++i) {
    history.push_back({"user", "Tell me about the dog number " + std::to_string(i) + "."});
    history.push_back({"assistant", "The dog " + std::to_string(i) + " ran to the park and played."});
  }
  chat.set_messages(history);
  const std::vector<int32_t> cached_before = chat.cached_tokens();
  const std::string question = "And the cat?";
  const ChatTurnStats st = chat.reply(question);

  // The policy, derived here from the context: the prompt may take the context less the answer's reserve (the limit);
  // once trimming is needed it must get down to a quarter of the context below that (the target).
  const int cap = chat.capacity();
  const int limit = cap - answer_tokens;
  const int target = limit - cap / 4;
  auto prompt_tokens = [&](const std::vector<ChatMessage>& messages) {
    return chat.tokenize_prompt(chat.render(messages, /*add_generation_prompt=*/true));
  };
  std::vector<ChatMessage> asked = history;
  asked.push_back({"user", question});
  REQUIRE(static_cast<int>(prompt_tokens(asked).size()) > limit);

  // What stayed: the system prompt, then the newest exchanges whole (a suffix starting at a user message), then the
  // question and its answer.
  const std::vector<ChatMessage>& now = chat.messages();
  REQUIRE(now.size() >= 4);
  CHECK(now.front() == history.front());
  CHECK(now[1].role == "user");
  CHECK(st.dropped_messages == static_cast<int>(asked.size() + 1 - now.size()));
  const std::vector<ChatMessage> kept(now.begin(), now.end() - 1);  // without the answer
  CHECK(std::equal(kept.begin() + 1, kept.end(), asked.end() - static_cast<long>(kept.size() - 1)));
  // It reaches the target, and keeping one more exchange would not have.
  CHECK(st.prompt_tokens == static_cast<int>(prompt_tokens(kept).size()));
  CHECK(st.prompt_tokens <= target);
  std::vector<ChatMessage> one_more = kept;
  const auto start = asked.end() - static_cast<long>(kept.size() - 1);
  one_more.insert(one_more.begin() + 1, start - 2, start);  // the exchange before: a user message and its answer
  CHECK((start - 2)->role == "user");
  CHECK(static_cast<int>(prompt_tokens(one_more).size()) > target);
  // Everything after the first change is prefilled again.
  CHECK(st.reused_tokens == static_cast<int>(common_prefix(cached_before, prompt_tokens(kept))));
  CHECK(st.prefilled_tokens == st.prompt_tokens - st.reused_tokens);
  CHECK(f.scheduler->check_invariants() == "");
}

TEST_CASE("stories260K: fitting a 10,000-message history renders the template a few dozen times, not per message") {
  Fixture f(kStories, 256, stories_options(8));
  ChatSession& chat = *f.session;
  std::vector<ChatMessage> history;
  for (int i = 0; i < 5000; ++i) {
    history.push_back({"user", "Question " + std::to_string(i) + "?"});
    history.push_back({"assistant", "Answer " + std::to_string(i) + "."});
  }
  chat.set_messages(history);
  const ChatTurnStats st = chat.reply("Last question?");
  CHECK(st.dropped_messages > 9900);
  // Searching from the newest end: about 2 log2(n) renders of what is kept. Dropping one exchange at a time
  // rendered the whole remaining history ~5,000 times.
  CHECK(st.fit_renders <= 40);
  CHECK(chat.messages().size() >= 4);
}

TEST_CASE("stories260K: a message too long for the context alone is refused and the conversation is unchanged") {
  Fixture f(kStories, 64, stories_options(8));
  ChatSession& chat = *f.session;
  chat.reply("Hi");
  const std::vector<ChatMessage> before = chat.messages();
  std::string long_text;
  for (int i = 0; i < 60; ++i) long_text += "ball ";
  CHECK_THROWS_AS(chat.reply(long_text), Error);
  CHECK(chat.messages() == before);
  // And the session still works.
  chat.reply("Hi again");
  CHECK(chat.messages().size() == before.size() + 2);
}

TEST_CASE("stories260K: a template that raises leaves the conversation unchanged, with the template's message") {
  ChatSessionOptions options = stories_options(4);
  options.template_source =
      "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('System role not supported') }}"
      "{% endif %}{{ m.content }}\n{% endfor %}";
  Fixture f(kStories, 256, options);
  ChatSession& chat = *f.session;
  chat.set_system_prompt("Be nice.");
  try {
    chat.reply("Hello");
    FAIL("the template's exception did not reach the caller");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("System role not supported") != std::string::npos);
  }
  CHECK(chat.messages().size() == 1);
  chat.set_system_prompt("");
  CHECK_FALSE(chat.system_prompt().has_value());
  chat.reply("Hello");
  CHECK(chat.messages().size() == 2);
}

TEST_CASE("stories260K: stopping a turn keeps the words so far; stopping before the first word cancels the turn") {
  Fixture f(kStories, 256, stories_options(16));
  ChatSession& chat = *f.session;
  std::atomic<bool> stop{false};
  ChatEvents events;
  events.stop = &stop;
  events.on_text = [&](std::string_view) { stop.store(true); };  // stop after the first piece of text
  const ChatTurnStats st = chat.reply("Once upon a time", events);
  CHECK(st.finish_reason == "interrupted");
  CHECK(st.generated_tokens >= 1);
  CHECK(st.generated_tokens < 16);
  REQUIRE(chat.messages().size() == 2);
  CHECK(chat.messages()[1].role == "assistant");

  stop.store(true);
  ChatEvents stopped;
  stopped.stop = &stop;
  const ChatTurnStats cancelled = chat.reply("Another one", stopped);
  CHECK(cancelled.finish_reason == "interrupted");
  CHECK(cancelled.generated_tokens == 0);
  CHECK(chat.messages().size() == 2);

  // The next turn goes on from the cache as usual.
  const ChatTurnStats next = chat.reply("Go on");
  CHECK(next.reused_tokens > 0);
  CHECK(chat.messages().size() == 4);
  CHECK(f.scheduler->check_invariants() == "");
}

TEST_CASE("stories260K: save and load round trip, and bad conversation files are refused with a clear message") {
  Fixture f(kStories, 256, stories_options(6));
  ChatSession& chat = *f.session;
  chat.set_system_prompt("Tell a story.\twith \"quotes\" and ünïcödé\n");
  chat.reply("Once upon a time");
  chat.reply("Then?");
  const nlohmann::json saved = chat.to_json();
  const std::vector<ChatMessage> loaded = ChatSession::messages_from_json(nlohmann::json::parse(saved.dump()));
  CHECK(loaded == chat.messages());
  CHECK(ChatSession::messages_from_json(saved["messages"]) == chat.messages());  // a bare array too

  // A second session continues the loaded conversation: nothing of it is cached there, so all is prefilled.
  ChatSession other(*f.scheduler, *f.model->tokenizer, stories_options(6));
  other.set_messages(loaded);
  const ChatTurnStats st = other.reply("And then?");
  CHECK(st.reused_tokens == 0);
  CHECK(other.messages().size() == loaded.size() + 2);
  CHECK(other.system_prompt() == chat.system_prompt());

  const auto refused = [](const char* text) {
    try {
      ChatSession::messages_from_json(nlohmann::json::parse(text));
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK(refused("42").find("array") != std::string::npos);
  CHECK(refused("{\"msgs\": []}").find("messages") != std::string::npos);
  CHECK(refused("[{\"role\": \"user\", \"content\": \"a\"}, {\"content\": \"b\"}]").find("message 2") !=
        std::string::npos);
  CHECK(refused("[{\"role\": \"user\", \"content\": 7}]").find("content") != std::string::npos);
  CHECK(refused("[\"hello\"]").find("message 1") != std::string::npos);
}
