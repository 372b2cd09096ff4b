#' alexnet: AlexNet with a native oneDNN engine
#'
#' The package builds the AlexNet convolutional network in the grouped form of
#' the Heuritech `convnets-keras` model (the layer names, such as `conv_2_1` and
#' `dense_3`, are theirs) and runs it with a compiled C engine built on oneDNN.
#'
#' * [alexnet()] creates a network; printing it shows the layer table.
#' * [alexnet_features()] computes the activations of a named layer (see
#'   [alexnet_layers()]) as a numeric matrix with one row per image.
#' * [predict.alexnet()] gives class probabilities or labels.
#' * [image_array()] attaches labels to an array of pixels.
#' * [alexnet_backend()] and [alexnet_threads()] describe and tune the engine.
#'
#' @section Input images:
#' Images are R arrays of pixels with `dim = c(n, height, width, channels)`:
#' the first index is the image, then the row (top to bottom), the column
#' (left to right) and the channel. `channels` is 3 (red, green, blue) or 1
#' (grey, copied to the three channels); a 3-d array `c(n, height, width)` is
#' taken as grey. Values are on the 0..255 scale. Images of any size are
#' resized to the network's input (227 x 227, or 224 x 224 for the
#' torchvision variant) as JPEG files are (k x k blocks averaged where an
#' image is k >= 2 times larger, then bilinear sampling with half-pixel
#' centres, as PIL and torch do), so the same pixels give the same result by
#' every route; a 227 x 227 image is used as it is. Inside the network, the per-channel
#' mean of the `mean` argument of [alexnet()] (by default the variant's: the
#' ImageNet means 123.68, 116.779, 103.939 for the seed's) is subtracted
#' first.
#'
#' @docType package
#' @name alexnet-package
#' @keywords internal
#' @importFrom stats predict
#' @importFrom rlang caller_arg caller_env
#' @useDynLib alexnet, .registration = TRUE, .fixes = "C_"
NULL

.engine_facts <- NULL

# The network's facts come from the engine, which owns them (each variant's
# layer names, operations, input size and convention, parameter counts; the
# Keras weight layers): bound here, before the namespace is sealed.
.onLoad <- function(libname, pkgname) {
  facts <- .Call(C_engine_facts)
  ns <- topenv()
  assign(".engine_facts", facts, envir = ns)
  assign(".param_layers", facts$param_layers, envir = ns)
  assign(".weight_layers", facts$weight_layers, envir = ns)
}

# The facts of a variant ("heuritech", "caffe", "torchvision"), or of a net's.
arch_facts <- function(x = "heuritech") {
  .engine_facts$archs[[if (inherits(x, "alexnet")) net_arch(x) else x]]
}
