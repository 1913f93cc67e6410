"""Converters from public neuron data sets to nnU-Net raw data sets."""
