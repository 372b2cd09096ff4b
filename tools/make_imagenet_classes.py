#!/usr/bin/python3
"""Write inst/extdata/imagenet_classes.txt: the 1000 ILSVRC-2012 class names,
one per line, in the order of the classes of every ImageNet AlexNet (the
synsets sorted by WordNet id: Caffe's synset_words.txt, torchvision's and
Heuritech's outputs). Taken from torchvision (Debian python3-torchvision),
whose names are unique (R's class labels must be: e.g. "crane bird" and
"crane")."""
import collections
import os

from torchvision.models._meta import _IMAGENET_CATEGORIES as NAMES

names = list(NAMES)
dups = [n for n, k in collections.Counter(names).items() if k > 1]
assert len(names) == 1000 and not dups, dups
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "inst", "extdata", "imagenet_classes.txt")
with open(out, "w") as f:
    f.write("\n".join(names) + "\n")
print("wrote", out)
