#!/usr/bin/env python3
"""Writes tests/golden/templates/cases.json: chat templates rendered by Python's jinja2 exactly the way Hugging
Face's apply_chat_template renders them, for tests/test_chat_template_golden.cpp to compare against (byte for byte,
with no Python at test time).

Templates: the real ones in ../shared/chat-templates, the .jinja files in tests/golden/templates (SmolLM2's own
template and hand-written tricky ones), and the built-in formats of templates/chat_template.cpp (read from its
R"jinja(...)jinja" literals). Each is rendered over every conversation below, with and without the generation
prompt. A render that raises records the exception: raise_exception(...) messages exactly, other errors by kind.

Usage: scripts/gen_template_goldens.py [--shared-dir DIR]   (needs jinja2: pip install jinja2)
"""
import argparse
import copy
import json
import pathlib
import re
import sys

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

REPO = pathlib.Path(__file__).resolve().parent.parent
GOLDEN_DIR = REPO / "tests" / "golden" / "templates"


class RaisedByTemplate(Exception):
    """What the template's raise_exception(message) throws (HF raises jinja2's TemplateError)."""


def raise_exception(message):
    raise RaisedByTemplate(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # Hugging Face's override of jinja2's tojson: no HTML escaping, non-ASCII kept, insertion order kept.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def make_environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


TOOL_CALL = {
    "id": "call12345",
    "type": "function",
    "function": {"name": "get_weather", "arguments": {"location": "Paris, France", "unit": "celsius", "days": 2}},
}

CONVERSATIONS = {
    "system_multi_turn": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Hello! Who are you?"},
        {"role": "assistant", "content": "I am an assistant. How can I help?"},
        {"role": "user", "content": "What is 2 + 2?"},
    ],
    "single_user": [
        {"role": "user", "content": "Tell me a story."},
    ],
    "multi_turn_no_system": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there."},
        {"role": "user", "content": "Bye"},
        {"role": "assistant", "content": "Goodbye!"},
    ],
    "special_characters": [
        {"role": "system", "content": "  Use \"double\" and 'single' quotes,\ttabs and\nnewlines.  \n"},
        {"role": "user", "content": "Ünïcödé: 中文, русский, العربية, emoji 😀🚀 — and a backslash \\ plus "
                                    "{{ braces }} and {% tags %}."},
        {"role": "assistant", "content": "\tIndented reply\nwith \"quotes\", 'apostrophes' & <html>\n\n"},
        {"role": "user", "content": "Line one\r\nLine two\u00a0non-breaking\u2028separator?"},
    ],
    "assistant_first": [
        {"role": "assistant", "content": "I speak first."},
        {"role": "user", "content": "Why?"},
    ],
    "system_and_user": [
        {"role": "system", "content": "System rules apply."},
        {"role": "user", "content": "Can I use a system prompt?"},
    ],
    "tool_call_round_trip": [
        {"role": "user", "content": "What's the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
        {"role": "tool", "tool_call_id": "call12345", "content": "{\"temperature\": 21, \"sky\": \"clear\"}"},
        {"role": "assistant", "content": "It is 21°C and clear in Paris."},
        {"role": "user", "content": "Thanks"},
    ],
    "content_parts": [
        {"role": "user", "content": [{"type": "text", "text": "Describe "}, {"type": "image"},
                                     {"type": "text", "text": " please."}]},
        {"role": "assistant", "content": "A cat on a mat."},
        {"role": "user", "content": "What colour is the cat?"},
    ],
}

# (bos, eos) pairs: realistic special tokens for every conversation, plus empty ones for the simplest.
TOKEN_SETS = [("<s>", "</s>")]
EMPTY_TOKEN_CONVERSATIONS = {"single_user", "system_multi_turn"}


def builtin_templates():
    source = (REPO / "templates" / "chat_template.cpp").read_text(encoding="utf-8")
    found = re.findall(r'\{"(\w+)",\s*R"jinja\((.*?)\)jinja"\}', source, flags=re.S)
    if not found:
        sys.exit("no built-in templates found in templates/chat_template.cpp")
    return found


def render(env, source, messages, add_generation_prompt, bos, eos):
    try:
        template = env.from_string(source)
        # A fresh copy each time: jinja2 filters can mutate lists in place (indent does `s += "\n"`).
        text = template.render(messages=copy.deepcopy(messages), add_generation_prompt=add_generation_prompt,
                               bos_token=bos, eos_token=eos)
        return {"expected": text}
    except RaisedByTemplate as e:
        return {"expected_exception": str(e)}
    except jinja2.TemplateSyntaxError as e:
        sys.exit(f"template does not parse in jinja2: {e}")
    except Exception as e:  # a TypeError or UndefinedError inside the template: any error will do on the C++ side
        return {"expected_error": f"{type(e).__name__}: {e}"}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared-dir", default=str(REPO.parent / "shared"), help="the shared/ folder")
    args = parser.parse_args()
    shared_templates = pathlib.Path(args.shared_dir) / "chat-templates"

    templates = []  # (origin, name, source)
    for path in sorted(shared_templates.glob("*.jinja")):
        templates.append(("shared", path.name, path.read_text(encoding="utf-8")))
    if len(templates) < 4:
        sys.exit(f"expected the shared chat templates in {shared_templates}")
    for path in sorted(GOLDEN_DIR.glob("*.jinja")):
        templates.append(("golden", path.name, path.read_text(encoding="utf-8")))
    for name, source in builtin_templates():
        templates.append(("builtin", name, source))

    env = make_environment()
    cases = []
    for origin, name, source in templates:
        for conversation, messages in CONVERSATIONS.items():
            token_sets = TOKEN_SETS + ([("", "")] if conversation in EMPTY_TOKEN_CONVERSATIONS else [])
            for bos, eos in token_sets:
                for add_generation_prompt in (False, True):
                    case = {"origin": origin, "template": name, "conversation": conversation,
                            "add_generation_prompt": add_generation_prompt, "bos_token": bos, "eos_token": eos}
                    if origin == "builtin":
                        case["source"] = source  # lets the test notice a built-in edited without regenerating
                    case.update(render(env, source, messages, add_generation_prompt, bos, eos))
                    cases.append(case)

    out = {
        "generator": "scripts/gen_template_goldens.py",
        "jinja2_version": jinja2.__version__,
        "conversations": CONVERSATIONS,
        "cases": cases,
    }
    target = GOLDEN_DIR / "cases.json"
    target.write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    outcomes = {}
    for case in cases:
        kind = "output" if "expected" in case else "raised" if "expected_exception" in case else "error"
        outcomes[kind] = outcomes.get(kind, 0) + 1
    print(f"wrote {len(cases)} cases from {len(templates)} templates to {target.relative_to(REPO)}: {outcomes}")


if __name__ == "__main__":
    main()
