"""Knowledge probing (KA2L): semantic-entropy labels, hidden states on Ray Data, an MLP probe per layer."""
