"""Chunked prefill and the two key/value layouts: a long prompt that arrives while others stream is
prefilled in chunks between their decode steps (they keep getting tokens), and every request's greedy
text still equals its solo generate() run."""

from __future__ import annotations

import asyncio

import pytest
import torch

SHORT = ["Once upon a time", "The weather today is", "In a small village there lived"]
LONG = "A very long prompt about the sea and the stars, " * 14  # ~170 tokens


def run_engine(tiny_model, kv_cache, max_new_tokens, **options):
    """Start 3 short greedy streams, submit the long prompt once they all stream, and return each text
    plus the order of token events (request index per event) as the engine emitted them."""
    from pretrained.serving.scheduler import Engine, GenerationRequest, SamplingParams

    model, tokenizer = tiny_model
    engine = Engine(model, tokenizer, max_batch_size=4, kv_cache=kv_cache, **options)
    no_eos = {tokenizer.eos_token_id: -100.0}

    async def scenario():
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()  # one queue: events in emission order
        make = lambda text, i: GenerationRequest(tokenizer.encode(text), SamplingParams(  # noqa: E731
            max_tokens=max_new_tokens, temperature=0, logit_bias=no_eos), queue, loop, i)
        engine.start()
        try:
            engine.submit([make(text, i) for i, text in enumerate(SHORT)])
            order, texts, finished = [], [""] * 4, 0
            while finished < 4:
                token = await asyncio.wait_for(queue.get(), 60)
                assert token.error is None, token.error
                order.append(token.index)
                texts[token.index] += token.text
                finished += token.finish_reason is not None
                if len(order) == 3 * len(SHORT):  # every short request streams: the long one arrives
                    chunks_before = engine.prefill_chunks
                    engine.submit([make(LONG, 3)])
            return texts, order, engine.prefill_chunks - chunks_before
        finally:
            engine.stop()

    return asyncio.run(scenario())


@pytest.mark.parametrize("kv_cache", ["slots", "padded"])
def test_long_prompt_is_prefilled_in_chunks_while_others_stream(tiny_model, kv_cache):
    model, tokenizer = tiny_model
    long_length = len(tokenizer.encode(LONG))
    assert long_length > 150
    texts, order, chunks = run_engine(tiny_model, kv_cache, 40, max_prefill_tokens=64, max_num_batched_tokens=20)
    # 3 running rows leave 17 prompt tokens per turn: the long prompt takes ceil(long / 17) chunks
    assert chunks == -(-long_length // 17)
    first_long = order.index(3)
    arrived = 3 * len(SHORT)  # events before the long request was submitted
    during = [i for i in order[arrived:first_long] if i != 3]
    assert len(during) >= 3 * (chunks - 1)  # each short stream got a token at every turn of the prefill
    with_bias = _solo_no_eos(tiny_model, SHORT + [LONG], 40)
    assert texts == with_bias


@pytest.mark.parametrize("kv_cache", ["slots", "padded"])
def test_rows_leave_and_join_while_a_prompt_is_prefilled(tiny_model, kv_cache):
    """Short rows finish (their slots freed and refilled) in the middle of the long prefill."""
    texts, order, chunks = run_engine(tiny_model, kv_cache, 12, max_prefill_tokens=64, max_num_batched_tokens=8)
    # 3 rows leave 5 prompt tokens per turn: the short rows are done (their slots freed, the long one
    # moved to slot 0) long before the ~170-token prompt, whose rest then goes in 64-token chunks
    assert 3 <= chunks <= 12
    assert texts == _solo_no_eos(tiny_model, SHORT + [LONG], 12)


def test_a_burst_sends_first_tokens_when_its_prefill_turn_ends(tiny_model):
    """Prompts that arrive together are prefilled in one turn; each first token waits for that turn's end,
    so no stream sits between its first and second token while the others' prompts are prefilled."""
    from pretrained.serving.scheduler import Engine, GenerationRequest, SamplingParams

    model, tokenizer = tiny_model
    engine = Engine(model, tokenizer, max_batch_size=4)
    seen = []  # (request index, prefill chunks so far, decode steps so far) per event, at emission

    async def scenario():
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()
        params = SamplingParams(max_tokens=3, temperature=0, logit_bias={tokenizer.eos_token_id: -100.0})
        requests = [GenerationRequest(tokenizer.encode(text), params, queue, loop, i) for i, text in enumerate(SHORT)]
        for request in requests:
            emit = request.emit
            request.emit = lambda token, emit=emit: (seen.append((token.index, engine.prefill_chunks, engine.steps)),
                                                     emit(token))
        engine.submit(requests)  # all waiting before the engine's first turn
        engine.start()
        try:
            finished = 0
            while finished < len(SHORT):
                finished += (await asyncio.wait_for(queue.get(), 60)).finish_reason is not None
        finally:
            engine.stop()

    asyncio.run(scenario())
    first = {}
    for index, chunks, steps in seen:
        first.setdefault(index, (chunks, steps))
    assert first == {i: (len(SHORT), 0) for i in range(len(SHORT))}  # after every prefill, before any decode
    assert len(seen) == 3 * len(SHORT)


def test_token_budget_must_leave_room_for_prefill(tiny_model):
    from pretrained.errors import InputError
    from pretrained.serving.scheduler import Engine

    model, tokenizer = tiny_model
    with pytest.raises(InputError, match="max-num-batched-tokens 4 must exceed --max-batch-size 4"):
        Engine(model, tokenizer, max_batch_size=4, max_num_batched_tokens=4)
    with pytest.raises(InputError, match="--kv-cache 'pages'"):
        Engine(model, tokenizer, kv_cache="pages")


def _solo_no_eos(tiny_model, prompts, max_new_tokens):
    """Each prompt alone through generate(), greedy, with the end-of-sequence token suppressed."""
    model, tokenizer = tiny_model
    texts = []
    for prompt in prompts:
        ids = torch.tensor([tokenizer.encode(prompt)])
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, suppress_tokens=[tokenizer.eos_token_id])
        texts.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True))
    return texts



def test_slot_cache_matches_a_full_forward(tiny_model):
    """Prompts prefilled into slots (one in two chunks), a decode step over rows of different lengths, a
    row moved to a freed slot: each row's logits equal the model's plain forward over its tokens."""
    from pretrained.serving.kv_slots import SlotKV

    model, tokenizer = tiny_model
    prompts = [tokenizer.encode(t) for t in ["Hello there", "A much longer prompt about many things at once", "x"]]
    kv = SlotKV(4, 256)

    def full(ids):
        return model(input_ids=torch.tensor([ids])).logits[0, -1]

    with torch.inference_mode():
        for slot, ids in enumerate(prompts):
            cut = len(ids) // 2 if slot == 1 else 0
            if cut:
                model(input_ids=torch.tensor([ids[:cut]]), past_key_values=kv.prefill(slot, 0, cut), use_cache=True)
            out = model(input_ids=torch.tensor([ids[cut:]]), past_key_values=kv.prefill(slot, cut, len(ids) - cut),
                        use_cache=True)
            torch.testing.assert_close(out.logits[0, -1], full(ids), atol=1e-5, rtol=1e-5)
        step = [5, 7, 9]
        cache, mask, positions = kv.decode(3)
        out = model(input_ids=torch.tensor([[t] for t in step]), attention_mask=mask, position_ids=positions,
                    past_key_values=cache, use_cache=True)
        for i, ids in enumerate(prompts):
            torch.testing.assert_close(out.logits[i, -1], full(ids + [step[i]]), atol=1e-5, rtol=1e-5)
        kv.move(2, 0)  # row 0 finished: the last row takes its slot
        cache, mask, positions = kv.decode(2)
        out = model(input_ids=torch.tensor([[11], [13]]), attention_mask=mask, position_ids=positions,
                    past_key_values=cache, use_cache=True)
        torch.testing.assert_close(out.logits[0, -1], full(prompts[2] + [9, 11]), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.logits[1, -1], full(prompts[1] + [7, 13]), atol=1e-5, rtol=1e-5)
    assert kv.lengths == [len(prompts[2]) + 2, len(prompts[1]) + 2, 0, 0]


def test_a_client_leaving_during_its_prefill_frees_its_slot(tiny_model):
    from pretrained.serving.scheduler import Engine, GenerationRequest, SamplingParams

    model, tokenizer = tiny_model
    engine = Engine(model, tokenizer, max_batch_size=2, max_prefill_tokens=8, max_num_batched_tokens=4)  # 3 a turn

    async def scenario():
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()
        params = SamplingParams(max_tokens=30, temperature=0, logit_bias={tokenizer.eos_token_id: -100.0})
        short = GenerationRequest(tokenizer.encode(SHORT[0]), params, queue, loop, 0)
        long = GenerationRequest(tokenizer.encode(LONG), params, queue, loop, 1)
        engine.start()
        try:
            engine.submit([short])
            await queue.get()  # the short one streams: the long one is prefilled 3 tokens a turn
            engine.submit([long])
            while engine.prefilling is not long:
                await asyncio.sleep(0.001)
            long.cancelled = True
            texts = [""]
            while True:
                token = await asyncio.wait_for(queue.get(), 60)
                assert token.index == 0  # the long one never got a token
                texts[0] += token.text
                if token.finish_reason:
                    break
            after = GenerationRequest(tokenizer.encode(SHORT[1]), SamplingParams(max_tokens=30, temperature=0,
                                      logit_bias={tokenizer.eos_token_id: -100.0}), queue, loop, 2)
            engine.submit([after])
            while True:
                token = await asyncio.wait_for(queue.get(), 60)
                assert token.index == 2
                texts.append(token.text)
                if token.finish_reason:
                    break
            return long.prefilled, "".join(texts[1:])
        finally:
            engine.stop()

    prefilled, after = asyncio.run(scenario())
    assert prefilled < len(tokenizer.encode(LONG))  # it left mid-prompt
    assert engine.prefilling is None and not engine.rows
    assert after == _solo_no_eos(tiny_model, [SHORT[1]], 30)[0]
