# This file is part of the standard setup for testthat.
# It is recommended that you do not modify it.
#
# Where should you do additional testing?
# Please refer to testthat.R in the package's tests/ folder, not here.
#
# The C tests of the engine alone live in tests/engine (not shipped).

library(testthat)
library(alexnet)

test_check("alexnet")
