# Forward passes: features of a named layer, predictions.

forward <- function(net, images, layer, batch_size, call = caller_env()) {
  until <- .Call(C_output_find, net$ptr, layer)
  if (until < 0L) {
    abort("The engine does not know the layer {.val {layer}}.", call = call)
  }
  folder <- inherits(images, "image_folder")
  check_batch_memory(net, n_images(images), batch_size, layer = layer, folder = folder,
                     call = call)
  source_forward(net, images, until, batch_size, call = call)   # R/folders.R
}

#' Activations of a named layer as features
#'
#' Runs the images through the network up to `layer` (inference mode:
#' dropout off) and returns its activations, flattened, one row per image.
#' The matrix can be given as it is to classifiers such as
#' [e1071::svm()].
#'
#' Activations of convolution and pooling layers are flattened in the
#' channels-first order of the network (channel, row, column), like the
#' Keras `Flatten` of the original model: `convpool_5` gives 256 x 6 x 6 =
#' 9216 columns.
#'
#' @param net A network made by [alexnet()].
#' @param x Images: an [image_array()], an [image_folder()] of JPEG files
#'   (a file that fails with `on_error = "skip"` gives a row of `NA`), a
#'   character vector of JPEG file paths (read as [image_files()] would), or a
#'   numeric array of pixels with
#'   `dim = c(n, height, width, channels)` (channels 1 or 3) or
#'   `c(n, height, width)` (grey), values 0..255; see [image_array()] for
#'   the layout.
#' @param layer The name of the layer whose output is returned; one of
#'   [alexnet_layers()].
#' @param batch_size Number of images run through the network at once. Larger
#'   batches are a little faster and take more memory (about 0.6 MB of input
#'   plus the activations per image).
#' @return A numeric matrix with one row per image and one column per
#'   activation, without dimnames. When `x` is an [image_array()] with
#'   labels, they are in the attribute `"labels"` (a factor).
#' @seealso [alexnet_layer_table()] for the size of each layer.
#' @export
#' @examples
#' net <- alexnet(classes = 2, seed = 1)
#' px <- array(runif(2 * 28 * 28, 0, 255), dim = c(2, 28, 28))
#' x <- image_array(px, labels = c("a", "b"))
#' f <- alexnet_features(net, x, layer = "convpool_5")
#' dim(f)
#' attr(f, "labels")
alexnet_features <- function(net, x, layer = "convpool_5", batch_size = 32) {
  check_net(net)
  layer <- check_layer(layer, net)
  batch_size <- check_count(batch_size)
  images <- as_source(x, scan = FALSE)   # values checked as they are converted
  out <- forward(net, images, layer, batch_size)
  if (!is.null(images$labels)) {
    attr(out, "labels") <- images$labels
  }
  out
}
