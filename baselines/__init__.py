"""External restoration methods behind one small interface (GFPGAN, CodeFormer, RestoreFormer(++),
classical deconvolution, the blurry input itself)."""
