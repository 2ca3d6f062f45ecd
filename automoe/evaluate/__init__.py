"""Quality of a sub-network or model: validation loss, translations, BLEU and chrF;
`python -m automoe.evaluate` is the command."""

from automoe.evaluate.quality import (
    corpus_bleu,
    translate_examples,
    translation_scores,
    validation_loss,
)

__all__ = ["corpus_bleu", "translate_examples", "translation_scores", "validation_loss"]
