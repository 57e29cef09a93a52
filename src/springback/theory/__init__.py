"""The theory of P1 §3–4, computed: token trees, the compression protocol, the elasticity theorem.

* :mod:`.tree` — token trees over binary tokens with EOS leaves, pruning, Zipf masses
* :mod:`.huffman` — a real Huffman code, Kraft sums, entropy
* :mod:`.protocol` — ideal code length, joint distribution, γ and normalised γ
* :mod:`.elasticity` — D_p / D_a / D_t scenarios, exact derivatives in l, closed form, Hooke products
"""

from .elasticity import Scenario, closed_form_derivatives, closed_form_scenario, derivatives, make_scenario, rates, sweep
from .huffman import canonical_code, entropy_bits, huffman_lengths, kraft_sum, mean_length
from .protocol import (compression_rate, cross_entropy_bits, huffman_rate, ideal_code_length, joint_distribution,
                       kl_bits, normalised_rate)
from .tree import EOS, TokenTree, pareto_masses, random_responses

__all__ = [
    "EOS", "TokenTree", "pareto_masses", "random_responses",
    "huffman_lengths", "canonical_code", "kraft_sum", "entropy_bits", "mean_length",
    "ideal_code_length", "joint_distribution", "cross_entropy_bits", "kl_bits", "compression_rate",
    "normalised_rate", "huffman_rate",
    "Scenario", "make_scenario", "closed_form_scenario", "rates", "derivatives", "closed_form_derivatives", "sweep",
]
