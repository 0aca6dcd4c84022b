"""au_transfer: facial Action Unit recognition by transfer learning (Lim et al.), as a reproducible toolkit."""

__version__ = "0.1.0"

#: The 12 AUs annotated in DISFA, in the order used everywhere in this package.
DISFA_AUS: tuple[int, ...] = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
#: The 8 AUs of the standard 3-fold DISFA protocol (JAA-Net, ME-GraphAU).
STANDARD_AUS: tuple[int, ...] = (1, 2, 4, 6, 9, 12, 25, 26)
#: Paper Table VI: the face region that each AU is recognised from.
AU_REGION: dict[int, str] = {
    1: "upper", 2: "upper", 4: "upper", 5: "upper", 6: "upper",
    9: "middle",
    12: "lower", 15: "lower", 17: "lower", 20: "lower", 25: "lower", 26: "lower",
    # beyond Table VI: BP4D's other AUs, after the muscles they move (lid tightener; upper lip raiser, dimpler,
    # lip tightener, lip pressor)
    7: "upper", 10: "lower", 14: "lower", 23: "lower", 24: "lower",
}
#: Crop regions stored in the feature store; ``au_region`` is resolved per AU through :data:`AU_REGION`.
CROP_REGIONS: tuple[str, ...] = ("face", "upper", "middle", "lower")
REGIONS: tuple[str, ...] = (*CROP_REGIONS, "au_region")
