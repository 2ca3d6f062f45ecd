"""Corpora, tokenizer and token-budget batching for translation tasks."""

from automoe.data.batching import (
    Batch,
    BatchingError,
    Example,
    TokenBatcher,
    collate,
    encode_examples,
    make_batches,
)
from automoe.data.corpus import CorpusError, TranslationTask, load_split, read_lines, read_parallel
from automoe.data.pipeline import dataset_tokenizer, load_corpus_tasks, task_languages
from automoe.data.registry import (
    DATASETS,
    ENV_DATA_DIR,
    MULTI30K,
    ChecksumError,
    DatasetError,
    DatasetNotFoundError,
    DatasetSpec,
    cache_root,
    dataset_folder,
    download_dataset,
    get_dataset,
    resolve_dataset_dir,
    verify_files,
)
from automoe.data.tokenizer import Tokenizer, TokenizerError, lang_tag

__all__ = [
    "DATASETS",
    "ENV_DATA_DIR",
    "MULTI30K",
    "Batch",
    "BatchingError",
    "ChecksumError",
    "CorpusError",
    "DatasetError",
    "DatasetNotFoundError",
    "DatasetSpec",
    "Example",
    "TokenBatcher",
    "Tokenizer",
    "TokenizerError",
    "TranslationTask",
    "cache_root",
    "collate",
    "dataset_folder",
    "dataset_tokenizer",
    "download_dataset",
    "encode_examples",
    "get_dataset",
    "lang_tag",
    "load_corpus_tasks",
    "load_split",
    "make_batches",
    "read_lines",
    "read_parallel",
    "resolve_dataset_dir",
    "task_languages",
    "verify_files",
]
