"""The KALE study (issue #8): several pipeline variants, seeds, and one results page built from them."""
