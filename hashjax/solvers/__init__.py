"""Solvers: arrays in, arrays out (the DCC code update, k-means, the MrHash
autoencoder fit). No model building, data loading or workdir I/O."""
