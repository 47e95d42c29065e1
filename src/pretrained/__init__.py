"""pretrained: Hugging Face-format checkpoints with Transformers' API.

Public names resolve lazily, so `import pretrained` stays cheap and does not import torch;
the first access to e.g. `pretrained.AutoModel` imports the module that owns it.
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    "PretrainedConfig": "configuration",
    "PretrainedError": "errors",
    "ConfigError": "errors",
    "CheckpointError": "errors",
    "UnsafeCheckpointError": "errors",
    "PreTrainedModel": "modeling",
    "ModelOutput": "outputs",
    "AutoConfig": "auto",
    "AutoModel": "auto",
    "AutoModelForMaskedLM": "auto",
    "AutoModelForSequenceClassification": "auto",
    "AutoModelForTokenClassification": "auto",
    "AutoModelForQuestionAnswering": "auto",
    "AutoModelForMultipleChoice": "auto",
    "AutoModelForCausalLM": "auto",
    "AutoModelForSeq2SeqLM": "auto",
    "AutoTokenizer": "tokenization.auto",
    "BatchEncoding": "tokenization.encoding",
    "PreTrainedTokenizerBase": "tokenization.base",
    "PreTrainedTokenizer": "tokenization.python",
    "PreTrainedTokenizerFast": "tokenization.fast",
    "BertTokenizer": "tokenization.models",
    "BertTokenizerFast": "tokenization.models",
    "DistilBertTokenizer": "tokenization.models",
    "DistilBertTokenizerFast": "tokenization.models",
    "GPT2Tokenizer": "tokenization.models",
    "GPT2TokenizerFast": "tokenization.models",
    "RobertaTokenizer": "tokenization.models",
    "RobertaTokenizerFast": "tokenization.models",
    "LlamaTokenizer": "tokenization.models",
    "LlamaTokenizerFast": "tokenization.models",
    "T5Tokenizer": "tokenization.models",
    "T5TokenizerFast": "tokenization.models",
    "XLMRobertaTokenizerFast": "tokenization.models",
    "BertConfig": "models.bert",
    "BertModel": "models.bert",
    "BertForMaskedLM": "models.bert",
    "BertForSequenceClassification": "models.bert",
    "BertForTokenClassification": "models.bert",
    "BertForQuestionAnswering": "models.bert",
    "BertForMultipleChoice": "models.bert",
    "RobertaConfig": "models.roberta",
    "RobertaModel": "models.roberta",
    "RobertaForMaskedLM": "models.roberta",
    "RobertaForSequenceClassification": "models.roberta",
    "RobertaForTokenClassification": "models.roberta",
    "RobertaForQuestionAnswering": "models.roberta",
    "RobertaForMultipleChoice": "models.roberta",
    "XLMRobertaConfig": "models.roberta",
    "XLMRobertaModel": "models.roberta",
    "XLMRobertaForMaskedLM": "models.roberta",
    "XLMRobertaForSequenceClassification": "models.roberta",
    "XLMRobertaForTokenClassification": "models.roberta",
    "XLMRobertaForQuestionAnswering": "models.roberta",
    "XLMRobertaForMultipleChoice": "models.roberta",
    "DistilBertConfig": "models.distilbert",
    "DistilBertModel": "models.distilbert",
    "DistilBertForMaskedLM": "models.distilbert",
    "DistilBertForSequenceClassification": "models.distilbert",
    "DistilBertForTokenClassification": "models.distilbert",
    "DistilBertForQuestionAnswering": "models.distilbert",
    "DistilBertForMultipleChoice": "models.distilbert",
    "GPT2Config": "models.gpt2",
    "GPT2Model": "models.gpt2",
    "GPT2LMHeadModel": "models.gpt2",
    "GPT2ForSequenceClassification": "models.gpt2",
    "LlamaConfig": "models.llama",
    "LlamaModel": "models.llama",
    "LlamaForCausalLM": "models.llama",
    "LlamaForSequenceClassification": "models.llama",
    "MistralConfig": "models.llama",
    "MistralModel": "models.llama",
    "MistralForCausalLM": "models.llama",
    "MistralForSequenceClassification": "models.llama",
    "Qwen2Config": "models.llama",
    "Qwen2Model": "models.llama",
    "Qwen2ForCausalLM": "models.llama",
    "Qwen2ForSequenceClassification": "models.llama",
    "GenerationConfig": "generation",
    "GenerationMixin": "generation",
    "Cache": "generation",
    "DynamicCache": "generation",
    "StaticCache": "generation",
    "TextStreamer": "generation",
    "TextIteratorStreamer": "generation",
    "BaseStreamer": "generation",
    "LogitsProcessor": "generation",
    "LogitsProcessorList": "generation",
    "LogitsWarper": "generation",
    "TemperatureLogitsWarper": "generation",
    "TopKLogitsWarper": "generation",
    "TopPLogitsWarper": "generation",
    "MinPLogitsWarper": "generation",
    "TypicalLogitsWarper": "generation",
    "RepetitionPenaltyLogitsProcessor": "generation",
    "NoRepeatNGramLogitsProcessor": "generation",
    "NoBadWordsLogitsProcessor": "generation",
    "MinLengthLogitsProcessor": "generation",
    "MinNewTokensLengthLogitsProcessor": "generation",
    "StoppingCriteria": "generation",
    "StoppingCriteriaList": "generation",
    "MaxLengthCriteria": "generation",
    "MaxTimeCriteria": "generation",
    "EosTokenCriteria": "generation",
    "StopStringCriteria": "generation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pretrained' has no attribute {name!r}")
    value = getattr(import_module(f"pretrained.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
