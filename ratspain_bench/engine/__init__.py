"""The deep-learning engine shared by the timm and PainSeeker methods.

Small modules: `device` (device choice, seeds, autocast), `augment` (batched uint8 tensor crop, flip
and normalisation), `weights` (`--weights none|hub|lite0|PATH`), `backbone` (a timm model as K region
features), `features` (the frozen-backbone feature cache), `train` (the loop), `config` (the shared
config fields and profiles), `deep` (the Method base class both deep families use).
Importing this package imports torch; the registry imports it lazily.
"""
