"""LoRA adapters in PEFT's file format: config.py (LoraConfig, TaskType), layers.py (the modules put into a
model), lora.py (injection, trainable parameters, merge/unload, file keys), model.py (PeftModel,
get_peft_model, AutoPeftModelFor*)."""

from .config import LoraConfig, PeftType, TaskType
from .layers import LoraLinear, ModulesToSaveWrapper
from .model import (
    AutoPeftModelForCausalLM, AutoPeftModelForSequenceClassification, PeftModel, PeftModelForCausalLM,
    PeftModelForFeatureExtraction, PeftModelForQuestionAnswering, PeftModelForSeq2SeqLM,
    PeftModelForSequenceClassification, PeftModelForTokenClassification, get_peft_model, get_peft_model_state_dict,
    set_peft_model_state_dict,
)

__all__ = [
    "AutoPeftModelForCausalLM", "AutoPeftModelForSequenceClassification", "LoraConfig", "LoraLinear",
    "ModulesToSaveWrapper", "PeftModel", "PeftModelForCausalLM", "PeftModelForFeatureExtraction",
    "PeftModelForQuestionAnswering", "PeftModelForSeq2SeqLM", "PeftModelForSequenceClassification",
    "PeftModelForTokenClassification", "PeftType", "TaskType", "get_peft_model", "get_peft_model_state_dict",
    "set_peft_model_state_dict",
]
