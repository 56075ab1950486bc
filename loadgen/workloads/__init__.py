"""Workloads: datasets turned into token-id prompts with the target model's tokenizer, before the run."""

from .build import BuildOptions, build_prompts, render_messages
from .prompt import Conversation, Prompt
from .registry import SAMPLE_PATH, SPEED_CONFIGS, WORKLOAD_NAMES, Workload, WorkloadSpec, load_workload, prepare_speed
from .sampling import category_quotas, stratified_order
from .synthetic import random_prompts
from .tokenizer import ChatTokenizer, load_tokenizer
from .trace import Trace, TraceWindow, read_trace

__all__ = ["BuildOptions", "ChatTokenizer", "Conversation", "Prompt", "SAMPLE_PATH", "SPEED_CONFIGS", "WORKLOAD_NAMES",
           "Workload", "WorkloadSpec", "build_prompts", "load_tokenizer", "load_workload", "prepare_speed",
           "random_prompts", "read_trace", "render_messages", "stratified_order", "category_quotas", "Trace",
           "TraceWindow"]
