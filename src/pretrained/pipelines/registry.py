"""Task name -> pipeline class, Auto model class and default hub model, as Transformers' table; each
default also records the model_type and architecture its config.json declares (tests check them offline).

Classes are named by module and attribute and imported on first use. Aliases map onto the
canonical names (`sentiment-analysis` -> text-classification); `translation_en_to_de` is the
translation task with its languages. A model given alone picks its task from the suffix of the
first name in its config's `architectures`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from importlib import import_module

from ..errors import UnknownModelError


@dataclass(frozen=True)
class DefaultModel:
    """A task's default checkpoint and what its config.json declares, kept as data so the library's
    support for every default can be checked without downloading it."""

    id: str | None  # hub id; None: the embedded all-MiniLM-L6-v2
    model_type: str
    architecture: str  # the first of config.json's `architectures`


EMBEDDED = DefaultModel(None, "bert", "BertModel")


@dataclass(frozen=True)
class Task:
    module: str  # in pretrained.pipelines
    pipeline_class: str
    auto_class: str  # in pretrained.auto
    default: DefaultModel
    kind: str = "text"

    def load_class(self) -> type:
        return getattr(import_module(f"pretrained.pipelines.{self.module}"), self.pipeline_class)


TASKS: dict[str, Task] = {
    "feature-extraction": Task("feature_extraction", "FeatureExtractionPipeline", "AutoModel", EMBEDDED),
    "sentence-similarity": Task("sentence_similarity", "SentenceSimilarityPipeline", "AutoModel", EMBEDDED),
    "text-classification": Task(
        "text_classification", "TextClassificationPipeline", "AutoModelForSequenceClassification",
        DefaultModel("distilbert/distilbert-base-uncased-finetuned-sst-2-english", "distilbert",
                     "DistilBertForSequenceClassification")),
    "token-classification": Task(
        "token_classification", "TokenClassificationPipeline", "AutoModelForTokenClassification",
        DefaultModel("dbmdz/bert-large-cased-finetuned-conll03-english", "bert", "BertForTokenClassification")),
    "question-answering": Task(
        "question_answering", "QuestionAnsweringPipeline", "AutoModelForQuestionAnswering",
        DefaultModel("distilbert/distilbert-base-cased-distilled-squad", "distilbert",
                     "DistilBertForQuestionAnswering")),
    "fill-mask": Task("fill_mask", "FillMaskPipeline", "AutoModelForMaskedLM",
                      DefaultModel("distilbert/distilroberta-base", "roberta", "RobertaForMaskedLM")),
    "zero-shot-classification": Task(
        "zero_shot_classification", "ZeroShotClassificationPipeline", "AutoModelForSequenceClassification",
        DefaultModel("facebook/bart-large-mnli", "bart", "BartForSequenceClassification")),
    "text-generation": Task("text_generation", "TextGenerationPipeline", "AutoModelForCausalLM",
                            DefaultModel("openai-community/gpt2", "gpt2", "GPT2LMHeadModel")),
    "text2text-generation": Task("text2text_generation", "Text2TextGenerationPipeline", "AutoModelForSeq2SeqLM",
                                 DefaultModel("google-t5/t5-base", "t5", "T5WithLMHeadModel")),
    "summarization": Task("text2text_generation", "SummarizationPipeline", "AutoModelForSeq2SeqLM",
                          DefaultModel("sshleifer/distilbart-cnn-12-6", "bart", "BartForConditionalGeneration")),
    "translation": Task("text2text_generation", "TranslationPipeline", "AutoModelForSeq2SeqLM",
                        DefaultModel("google-t5/t5-base", "t5", "T5WithLMHeadModel")),
    "image-classification": Task(
        "image_classification", "ImageClassificationPipeline", "AutoModelForImageClassification",
        DefaultModel("google/vit-base-patch16-224", "vit", "ViTForImageClassification"), kind="image"),
    "image-feature-extraction": Task(  # Transformers' default is the classifier vit-base-patch16-224, whose pooler
        # AutoModel initialises at random; its in21k base checkpoint has the trained pooler
        "image_feature_extraction", "ImageFeatureExtractionPipeline", "AutoModel",
        DefaultModel("google/vit-base-patch16-224-in21k", "vit", "ViTModel"), kind="image"),
    "zero-shot-image-classification": Task(
        "zero_shot_image_classification", "ZeroShotImageClassificationPipeline", "AutoModel",
        DefaultModel("openai/clip-vit-base-patch32", "clip", "CLIPModel"), kind="multimodal"),
    "automatic-speech-recognition": Task(
        "automatic_speech_recognition", "AutomaticSpeechRecognitionPipeline", "AutoModelForSpeechSeq2Seq",
        DefaultModel("openai/whisper-tiny.en", "whisper", "WhisperForConditionalGeneration"), kind="audio"),
}

ALIASES: dict[str, str] = {
    "sentiment-analysis": "text-classification",
    "ner": "token-classification",
    "embeddings": "feature-extraction",
    "semantic-search": "sentence-similarity",
}

# architectures-name suffix -> task, most specific first
_ARCHITECTURE_SUFFIXES = (
    ("T5WithLMHeadModel", "text2text-generation"),  # the original T5 checkpoints' name of ForConditionalGeneration
    ("WhisperForConditionalGeneration", "automatic-speech-recognition"),
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMaskedLM", "fill-mask"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForConditionalGeneration", "text2text-generation"),
    ("MTModel", "translation"),
    ("ForImageClassification", "image-classification"),
    ("CLIPModel", "zero-shot-image-classification"),
    ("Model", "feature-extraction"),
)

_TRANSLATION = re.compile(r"^translation_([A-Za-z_-]+?)_to_([A-Za-z_-]+)$")


def known_tasks() -> list[str]:
    return sorted(TASKS) + sorted(ALIASES) + ["translation_XX_to_YY"]


def check_task(task: str) -> tuple[str, Task, dict]:
    """(canonical name, Task, options) for a task name or alias; options hold translation languages."""
    if not isinstance(task, str):
        raise UnknownModelError(f"task must be a string, got {type(task).__name__}; known tasks: {', '.join(known_tasks())}")
    name = ALIASES.get(task, task)
    if name in TASKS:
        return name, TASKS[name], {}
    match = _TRANSLATION.match(task)
    if match:
        return task, TASKS["translation"], {"src_lang": match.group(1), "tgt_lang": match.group(2)}
    close = difflib.get_close_matches(task, list(TASKS) + list(ALIASES), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise UnknownModelError(f"Unknown task {task!r}.{hint} Known tasks: {', '.join(known_tasks())}")


def task_from_config(config) -> str:
    """The task a checkpoint was built for, from `architectures` in its config.json."""
    architectures = getattr(config, "architectures", None) or []
    for arch in architectures:
        for suffix, task in _ARCHITECTURE_SUFFIXES:
            if arch.endswith(suffix):
                if task == "text2text-generation" and getattr(config, "model_type", "") == "marian":
                    return "translation"
                return task
    raise UnknownModelError(
        f"cannot infer the task of {getattr(config, 'name_or_path', None) or 'this model'}: its config has "
        f"architectures={architectures!r}; pass the task, e.g. pipeline('text-classification', model=...)"
    )
