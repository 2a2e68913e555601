"""Renders chat templates with Python's Jinja2 configured as transformers configures it for
apply_chat_template (an ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks, the
loopcontrols extension, a {% generation %} tag, transformers' tojson filter, raise_exception and
strftime_now): the reference the engine's chat template tests compare with.

    /usr/bin/python3 render_chat.py CASES_JSON OUT_JSON

CASES_JSON is a list of {"template": ..., "context": {...}}; OUT_JSON gets, per case, either
{"text": ..., "generation": [the text of each generation block]} or {"error": ...}.
"""
import json
import sys
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment


class AssistantTracker(Extension):
    tags = {"generation"}

    def __init__(self, environment):
        super().__init__(environment)
        self.spans = []

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    def _generation_support(self, caller):
        rv = caller()
        self.spans.append(rv)
        return rv


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def strftime_now(format):
    return datetime.now().strftime(format)


def render(case):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[AssistantTracker, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        template = env.from_string(case["template"])
        tracker = next(e for e in env.extensions.values() if isinstance(e, AssistantTracker))
        text = template.render(**case["context"])
        return {"text": text, "generation": tracker.spans}
    except Exception as e:  # every failure is an answer: the engine must fail too
        return {"error": f"{type(e).__name__}: {e}"}


def main():
    cases = json.load(open(sys.argv[1], encoding="utf-8"))
    with open(sys.argv[2], "w", encoding="utf-8") as out:
        json.dump([render(c) for c in cases], out, ensure_ascii=False)


if __name__ == "__main__":
    main()
