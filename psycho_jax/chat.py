"""Talk to a model in the terminal; the reply streams as it is generated.

    python -m psycho_jax.chat --checkpoint=/tmp/psycho_jax_pipeline/dpo
    python -m psycho_jax.chat --checkpoint=/path/to/Llama-3.2-1B-Instruct --temperature=0.7

`--checkpoint` is a stage workdir (its newest checkpoint and the tokenizer saved beside it) or a
Hugging Face directory. The conversation is kept within the context (`--max_context`, default the
model's `max_position_embeddings`): the oldest exchanges are dropped first, the system prompt never.
Every message goes through the crisis check of the evaluation's safety slice
(`safety.crisis_rules`); on a hit the crisis resources are shown next to the model's reply.
Commands: `/reset` starts over, `/quit` (or end of input) leaves.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from absl import app, flags

from psycho_jax.core import decode
from psycho_jax.data import tokenizer as tokenizer_lib
from psycho_jax.data.formats import Message
from psycho_jax.data.tokenizer import find_tokenizer
from psycho_jax.evaluation import safety
from psycho_jax.train import checkpoint as ckpt_lib

NOTICE = """\
psycho_jax chat: a RESEARCH model, not a therapist or a crisis service. Its replies can be wrong
or unhelpful; do not rely on them for your health or safety.
If you are in crisis or thinking about harming yourself: call or text 988 (US), call Samaritans
on 116 123 (UK and Ireland), call your local emergency number (911 / 112 / 999), or find a
helpline in your country at https://findahelpline.com.
Type /reset to start over, /quit to leave.
"""

CRISIS_RESOURCES = """\
(psycho_jax: your message sounds like you may be in crisis. This model is not a crisis service.
Please reach a person now: call or text 988 (US), Samaritans 116 123 (UK and Ireland), your local
emergency number (911 / 112 / 999), or a helpline in your country: https://findahelpline.com.)
"""

DEFAULT_SYSTEM = (
    "You are a warm, careful counselor. Listen, reflect what you hear, ask one open question at a "
    "time, respect the client's choices, and point to crisis help when there is any risk of harm."
)


class ChatSession:
    """A conversation with a model: the history and the context budget.

    Args:
      sampler: a `decode.Sampler` with a tokenizer.
      sampling: how replies are sampled (`max_new_tokens` is reserved in the context for the reply).
      system: the system prompt ("" for none).
      max_context: the most tokens of prompt plus reply.
    """

    def __init__(
        self,
        sampler: decode.Sampler,
        sampling: decode.Sampling,
        *,
        system: str = DEFAULT_SYSTEM,
        max_context: int | None = None,
        seed: int = 0,
    ):
        self.sampler = sampler
        self.sampling = sampling
        self.system = system
        self.max_context = max_context or sampler.config.max_seq_len
        if self.max_context <= sampling.max_new_tokens:
            raise ValueError(
                f"max_context={self.max_context} leaves no room for a prompt next to "
                f"max_new_tokens={sampling.max_new_tokens}"
            )
        self.seed = seed
        self.history: list[Message] = []
        self.dropped = 0  # messages dropped from the start to fit the context

    def reset(self) -> None:
        self.history, self.dropped = [], 0

    def _messages(self) -> list[Message]:
        return ([Message("system", self.system)] if self.system else []) + self.history

    def prompt_ids(self) -> list[int]:
        """The prompt for the next reply, dropping the oldest exchanges until it fits the context."""
        budget = self.max_context - self.sampling.max_new_tokens
        ids = self.sampler.encode_prompt(self._messages())
        while len(ids) > budget and len(self.history) > 1:
            # Drop the oldest user turn and the assistant reply that answered it.
            cut = 2 if len(self.history) > 2 and self.history[1].role == "assistant" else 1
            self.history, self.dropped = self.history[cut:], self.dropped + cut
            ids = self.sampler.encode_prompt(self._messages())
        if len(ids) > budget:
            raise ValueError(
                f"the message is {len(ids)} tokens with the system prompt; at most {budget} fit "
                f"(context {self.max_context} - {self.sampling.max_new_tokens} for the reply)"
            )
        return ids

    def respond(self, text: str) -> Iterator[str]:
        """Adds the user's message and yields the reply as text pieces while it is generated."""
        before = (list(self.history), self.dropped)
        self.history.append(Message("user", text))
        try:
            ids = self.prompt_ids()
        except ValueError:  # refused: the conversation stays as it was
            self.history, self.dropped = before
            raise
        tokenizer = self.sampler.tokenizer
        new: list[int] = []
        shown = ""
        for token in self.sampler.stream(ids, self.sampling, seed=self.seed):
            new.append(token)
            text_so_far = tokenizer.decode(new, skip_special_tokens=True)
            if text_so_far.endswith("\ufffd"):  # a multi-byte character is not complete yet
                continue
            yield text_so_far[len(shown) :]
            shown = text_so_far
        reply = tokenizer.decode(new, skip_special_tokens=True)
        if reply != shown:
            yield reply[len(shown) :]
        self.history.append(Message("assistant", reply))
        self.seed += 1


def run(session: ChatSession, lines: Iterator[str], out=sys.stdout) -> None:
    """The terminal loop over input lines (stdin, or a test's list)."""
    out.write(NOTICE + "\n")
    out.flush()
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if text == "/quit":
            break
        if text == "/reset":
            session.reset()
            out.write("(conversation cleared)\n")
            continue
        dropped_before = session.dropped
        out.write("counselor: ")
        try:
            for piece in session.respond(text):
                out.write(piece)
                out.flush()
        except ValueError as e:
            out.write(f"\n(message not sent: {e})")
        out.write("\n")
        hits = safety.crisis_rules(text)
        if hits:  # the evaluation's crisis check, on every message: resources next to the reply
            out.write(CRISIS_RESOURCES)
        if session.dropped > dropped_before:
            n = session.dropped - dropped_before
            out.write(f"(the oldest {n} messages no longer fit and were dropped)\n")
        out.flush()


def _input_lines() -> Iterator[str]:
    interactive = sys.stdin.isatty()
    while True:
        try:
            yield input("you: ") if interactive else next(sys.stdin)
        except (EOFError, StopIteration):
            return


def define_flags() -> None:
    flags.DEFINE_string("checkpoint", None, "A stage workdir or a Hugging Face directory.")
    flags.mark_flag_as_required("checkpoint")
    flags.DEFINE_string("tokenizer", "", "Tokenizer; default the one saved with the checkpoint.")
    flags.DEFINE_float("temperature", 0.7, "0 for greedy.")
    flags.DEFINE_integer("top_k", 0, "0: off.")
    flags.DEFINE_float("top_p", 0.9, "1: off.")
    flags.DEFINE_integer("max_new_tokens", 256, "The longest reply, in tokens.")
    flags.DEFINE_integer("max_context", 0, "Prompt + reply tokens; 0: the model's maximum.")
    flags.DEFINE_string("system", DEFAULT_SYSTEM, "System prompt ('' for none).")
    flags.DEFINE_integer("seed", 0, "Sampling seed.")


def main(argv) -> None:
    del argv
    f = flags.FLAGS
    tokenizer = tokenizer_lib.load_tokenizer(find_tokenizer(f.checkpoint, f.tokenizer))
    model = ckpt_lib.load_model(f.checkpoint)
    sampler = decode.Sampler(model, tokenizer)
    sampling = decode.Sampling(f.temperature, f.top_k, f.top_p, f.max_new_tokens)
    session = ChatSession(
        sampler, sampling, system=f.system, max_context=f.max_context or None, seed=f.seed
    )
    run(session, _input_lines())


if __name__ == "__main__":
    define_flags()
    app.run(main)
