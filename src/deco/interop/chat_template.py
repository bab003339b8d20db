"""deco's conversation templates as HF Jinja chat templates, and the way back (which one a Jinja is).

An exported model carries its template as a Jinja `chat_template` (what HF processors and tokenizers
use), written from the Template's own pieces so `apply_chat_template` and `deco.data.render_prompt`
give the same text. Messages may hold a string (with or without `<image>`) or HF's list of
`{"type": "image"}` / `{"type": "text", "text": ...}` parts; images go first, as LLaVA puts them.
The user part of every deco template already ends with the assistant tag, so the prompt for
generation is the same with or without `add_generation_prompt`.
"""

from __future__ import annotations

import json

from deco.data.templates import TEMPLATES, Template, get_template
from deco.errors import ConfigError
from deco.model.tokens import IMAGE_TOKEN

_SENTINEL = "\x00DECO\x00"


def _split(rendered: str, where: str) -> tuple[str, str]:
    if rendered.count(_SENTINEL) != 1:
        raise ConfigError(f"template part '{where}' cannot be written as Jinja (not prefix + text + suffix)")
    before, after = rendered.split(_SENTINEL)
    return before, after


def jinja_chat_template(template: str | Template) -> str:
    """A Jinja chat template that renders conversations exactly as the deco template does."""
    tmpl = get_template(template)
    q = json.dumps  # Jinja string literals: JSON escaping is valid Jinja syntax
    img, img_nl = q(IMAGE_TOKEN), q(IMAGE_TOKEN + "\n")
    answer_pre, answer_post = _split(tmpl.answer_part(_SENTINEL), "answer_part")
    parts = [
        # Count every image marker first: a single one is moved to the front of its turn (LLaVA).
        "{%- set ns = namespace(images=0) -%}{%- for m in messages -%}",
        "{%- if m['content'] is string -%}{%- set ns.images = ns.images + m['content'].count(" + img + ") -%}",
        "{%- else -%}{%- set ns.images = ns.images + (m['content'] | selectattr('type', 'equalto', 'image')",
        " | list | length) -%}{%- endif -%}{%- endfor -%}",
        "{%- if messages and messages[0]['role'] == 'system' -%}",
        "{%- set system = messages[0]['content'] if messages[0]['content'] is string else ",
        "messages[0]['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') -%}",
        "{%- set turns = messages[1:] -%}",
        "{%- else -%}{%- set system = " + q(tmpl.default_system) + " -%}{%- set turns = messages -%}{%- endif -%}",
    ]
    if _SENTINEL in tmpl.system_prefix(_SENTINEL):  # `plain` has no system prompt
        system_pre, system_post = _split(tmpl.system_prefix(_SENTINEL), "system_prefix")
        parts.append("{%- if system -%}{{ " + q(system_pre) + " + system + " + q(system_post) + " }}{%- endif -%}")
    parts += [
        "{%- for m in turns -%}",
        "{%- if m['content'] is string -%}{%- set text = m['content'] -%}{%- else -%}",
        "{%- set n = m['content'] | selectattr('type', 'equalto', 'image') | list | length -%}",
        "{%- set text = " + img_nl + " * n + (m['content'] | selectattr('type', 'equalto', 'text')",
        " | map(attribute='text') | join(' ')) -%}{%- endif -%}",
        "{%- if m['role'] == 'user' -%}",
    ]
    if _SENTINEL in tmpl.user_part(_SENTINEL):
        user_pre, user_post = _split(tmpl.user_part(_SENTINEL), "user_part")
        parts += [
            "{%- if ns.images == 1 and " + img + " in text -%}",
            "{%- set text = " + img_nl + " + (text | replace(" + img + ", '') | trim) -%}{%- endif -%}",
            "{{ " + q(user_pre) + " + text + " + q(user_post) + " }}",
        ]
    elif tmpl.user_part(IMAGE_TOKEN + _SENTINEL) == IMAGE_TOKEN:  # `plain`: only the image markers
        parts.append("{{ " + img + " * text.count(" + img + ") }}")
    else:
        raise ConfigError(f"template '{tmpl.name}': user_part cannot be written as Jinja")
    parts += [
        "{%- elif m['role'] == 'assistant' -%}",
        "{{ " + q(answer_pre) + " + text + " + q(answer_post) + " + " + q(tmpl.after_answer()) + " }}",
        "{%- endif -%}{%- endfor -%}",
    ]
    return "".join(parts)


def match_template(chat_template: str | None) -> str | None:
    """The name of the deco template whose Jinja form is exactly `chat_template`, if any."""
    if not chat_template:
        return None
    for name in TEMPLATES:
        if jinja_chat_template(name) == chat_template:
            return name
    return None
