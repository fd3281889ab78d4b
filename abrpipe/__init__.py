"""abrpipe: encode a source once into an ABR ladder, publish it as HLS and MPEG-DASH."""

__version__ = "0.1.0"
