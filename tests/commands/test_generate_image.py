"""generate --image: a tiny randomly initialised LLaVA-style model (CLIP vision tower, Llama
language model) built from configs, saved with its processor, and run through the real
command on a real PNG. No weights can be downloaded here; real checkpoints load the same way."""

from pathlib import Path

import pytest
import torch
from helpers import json_line
from typer.testing import CliRunner

from llmkit.cli import app
from llmkit.generation import image_prompt

runner = CliRunner()
PNG = Path(__file__).parents[1] / "fixtures" / "images" / "scaling-plot.png"
IMAGE_SIZE, PATCH = 32, 8
IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2  # one per patch ("default" drops CLIP's CLS)


@pytest.fixture(scope="module")
def tiny_vlm(trained_clm, tmp_path_factory) -> Path:
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = AutoTokenizer.from_pretrained(trained_clm)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        vision_feature_layer=-1,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=IMAGE_TOKENS,
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(
            size={"shortest_edge": IMAGE_SIZE},
            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        ),
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        image_token="<image>",
        num_additional_image_tokens=1,
    )
    folder = tmp_path_factory.mktemp("vlm") / "tiny-llava"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def generate(*args):
    result = runner.invoke(app, ["generate", *args, "--json"])
    return result, (json_line(result.stdout) if result.exit_code == 0 else None)


def test_a_prompt_about_a_png_goes_through_the_processor_and_the_model(tiny_vlm, tmp_path):
    from PIL import Image, ImageOps

    from llmkit.tokenizer import load_tokenizer

    prompt = "What does the plot show?"
    result, summary = generate(
        "-m", str(tiny_vlm), "--image", str(PNG), "-p", prompt, "--max-new-tokens", "12"
    )
    assert result.exit_code == 0, result.output
    [record] = summary["results"]
    assert summary["image"] == str(PNG)
    assert record["completion_tokens"] == 12 and record["completion"]
    # the image placeholder was expanded to one token per image patch
    text_tokens = len(load_tokenizer(tiny_vlm)(f"<image>\n{prompt}")["input_ids"])
    assert record["prompt_tokens"] == text_tokens - 1 + IMAGE_TOKENS

    # the picture reaches the model: another picture, another greedy completion
    inverted = tmp_path / "inverted.png"
    ImageOps.invert(Image.open(PNG).convert("RGB")).save(inverted)
    _, other = generate(
        "-m", str(tiny_vlm), "--image", str(inverted), "-p", prompt, "--max-new-tokens", "12"
    )
    assert other["results"][0]["completion"] != record["completion"]


def test_a_vision_language_model_also_takes_text_alone(tiny_vlm):
    result, summary = generate("-m", str(tiny_vlm), "-p", "Hello", "--max-new-tokens", "4")
    assert result.exit_code == 0, result.output
    assert summary["results"][0]["completion_tokens"] == 4


def test_the_chat_template_places_the_image_when_there_is_one(tiny_vlm):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_vlm)
    assert image_prompt(processor, "Describe it.", with_image=True) == "<image>\nDescribe it."
    assert image_prompt(processor, "<image> first", with_image=True) == "<image> first"
    processor.chat_template = (
        "{% for m in messages %}USER: {% for c in m['content'] %}{% if c['type'] == 'image' %}"
        "<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endfor %} ASSISTANT:"
    )
    assert image_prompt(processor, "Describe it.", with_image=True) == (
        "USER: <image>Describe it. ASSISTANT:"
    )


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("missing.png", "image file missing.png does not exist"),
        (str(Path(__file__)), "is not an image that Pillow can read"),
    ],
)
def test_a_bad_image_exits_2_with_one_message(tiny_vlm, image, message):
    result = runner.invoke(app, ["generate", "-m", str(tiny_vlm), "--image", image, "-p", "x"])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_an_image_for_a_text_only_model_exits_2(trained_clm):
    result = runner.invoke(
        app, ["generate", "-m", str(trained_clm), "--image", str(PNG), "-p", "x"]
    )
    assert result.exit_code == 2 and "needs a vision-language model" in result.output
