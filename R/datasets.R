# Data sets: Fashion-MNIST from Debian's dataset-fashion-mnist (IDX files,
# gzip), read with base R.

.fashion_mnist_classes <- c("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

.fashion_mnist_path <- "/usr/share/datasets/fashion-mnist"

#' Fashion-MNIST images
#'
#' Reads the Fashion-MNIST data set (Zalando; 60,000 training and 10,000 test
#' images of clothing, 28 x 28 grey, 10 classes) from the IDX files of
#' Debian's package `dataset-fashion-mnist`
#' (`/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`),
#' optionally keeping some classes and a fixed number of images per class.
#'
#' The images are returned as they are, 28 x 28 grey on the 0..255 scale
#' (0 is the background): the network resizes them to 227 x 227 and copies
#' the grey channel to red, green and blue itself.
#'
#' When `n_per_class` is given, the images of each class are a sample drawn
#' with `seed` (deterministic for a given `seed`), kept in the order of the
#' file; without `seed`, the first `n_per_class` of each class are taken.
#'
#' @param set `"train"` (60,000 images) or `"test"` (10,000).
#' @param classes `NULL` (all ten) or the classes to keep: names (see
#'   [fashion_mnist_classes()]) or numbers 0..9 (the file's codes). The
#'   labels of the result have these classes as levels, in this order.
#' @param n_per_class `NULL` (all the images of each class: 6,000 per class
#'   for `"train"`, 1,000 for `"test"`) or the number of images per class.
#' @param path The folder holding the four `.gz` files.
#' @param seed `NULL`, or a seed for the sample of `n_per_class` images of
#'   each class.
#' @return An [image_array()] of pixels with `dim = c(n, 28, 28)` (grey) and
#'   labels, a factor whose levels are the class names.
#' @seealso [fashion_mnist_classes()], [alexnet_experiments()]
#' @export
#' @examplesIf file.exists("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
#' x <- fashion_mnist("test", classes = c("Pullover", "Coat"), n_per_class = 5, seed = 1)
#' x
#' table(x$labels)
#' image(t(x$pixels[1, 28:1, ]), col = grey.colors(256, 1, 0), main = x$labels[1])
fashion_mnist <- function(set = c("train", "test"), classes = NULL, n_per_class = NULL,
                          path = .fashion_mnist_path, seed = NULL) {
  set <- match.arg(set)
  check_string(path)
  codes <- fashion_mnist_codes(classes)
  if (!is.null(n_per_class)) n_per_class <- check_count(n_per_class)
  if (!is.null(seed)) seed <- check_seed(seed)
  prefix <- if (set == "train") "train" else "t10k"
  image_file <- file.path(path, paste0(prefix, "-images-idx3-ubyte.gz"))
  label_file <- file.path(path, paste0(prefix, "-labels-idx1-ubyte.gz"))
  labels <- read_idx(label_file, magic = 2049L, dims = 1L)
  keep <- which(labels %in% codes)
  if (!is.null(n_per_class)) {
    keep <- unlist(lapply(codes, function(code) {
      idx <- which(labels == code)
      if (length(idx) < n_per_class) {
        name <- .fashion_mnist_classes[code + 1L]
        abort("The {set} set has {length(idx)} image{?s} of {.val {name}}, fewer than {.arg n_per_class} = {n_per_class}.")
      }
      if (is.null(seed)) idx[seq_len(n_per_class)] else with_seed(seed + code, sort(idx[sample.int(length(idx), n_per_class)]))
    }))
    keep <- sort(keep)
  }
  pixels <- read_idx(image_file, magic = 2051L, dims = 3L, n_expected = length(labels), keep = keep)
  lab <- factor(.fashion_mnist_classes[labels[keep] + 1L], levels = .fashion_mnist_classes[codes + 1L])
  image_array(pixels, labels = lab)
}

#' The classes of Fashion-MNIST
#'
#' @return A character vector of the ten class names, in the order of the
#'   file's codes 0..9.
#' @export
#' @examples
#' fashion_mnist_classes()
fashion_mnist_classes <- function() {
  .fashion_mnist_classes
}

fashion_mnist_codes <- function(classes, arg = caller_arg(classes), call = caller_env()) {
  if (is.null(classes)) {
    return(0:9)
  }
  if (is.factor(classes)) classes <- as.character(classes)
  if (is.numeric(classes)) {
    if (anyNA(classes) || any(classes != round(classes)) || any(classes < 0 | classes > 9)) {
      abort("{.arg {arg}} as numbers must be whole numbers 0..9.", call = call)
    }
    codes <- as.integer(classes)
  } else if (is.character(classes)) {
    codes <- match(classes, .fashion_mnist_classes) - 1L
    if (anyNA(codes)) {
      abort(c("{.arg {arg}} has unknown class{?es} {.val {classes[is.na(codes)]}}.",
              i = "The classes are {.val {(.fashion_mnist_classes)}}."), call = call)
    }
  } else {
    abort("{.arg {arg}} must be NULL, class names or numbers 0..9.", call = call)
  }
  if (length(codes) == 0L || anyDuplicated(codes)) {
    abort("{.arg {arg}} must name at least one class, each once.", call = call)
  }
  codes
}

# Read an IDX file (gzip or plain): unsigned bytes, big-endian header (magic
# number 0x00000801 for a vector, 0x00000803 for a 3-d array, then one 32-bit
# size per dimension). Returns the integer codes (dims 1) or a double array
# c(n, rows, cols) of the items `keep` (dims 3).
read_idx <- function(file, magic, dims, n_expected = NULL, keep = NULL, call = caller_env()) {
  if (!file.exists(file)) {
    abort(c("The Fashion-MNIST file {.file {file}} does not exist.",
            i = "Install the Debian package {.pkg dataset-fashion-mnist} ({.code apt-get install dataset-fashion-mnist}), or give {.arg path}."),
          call = call)
  }
  con <- gzfile(file, "rb")
  on.exit(close(con))
  header <- readBin(con, "integer", n = 1L + dims, size = 4L, endian = "big")
  if (length(header) < 1L + dims || header[1L] != magic) {
    abort(c("{.file {file}} is not an IDX file of the expected kind.",
            x = "Its magic number is {if (length(header)) header[1L] else 'missing'}, not {magic}."),
          call = call)
  }
  size <- header[-1L]
  if (any(size < 1L) || (!is.null(n_expected) && size[1L] != n_expected)) {
    abort("{.file {file}} has sizes {paste(size, collapse = ' x ')}, which do not match the labels ({n_expected} items).",
          call = call)
  }
  total <- prod(as.double(size))
  bytes <- readBin(con, "raw", n = total + 1)
  if (length(bytes) != total) {
    abort("{.file {file}} is {if (length(bytes) < total) 'truncated' else 'longer than its header says'}: {length(bytes)} bytes of data for {paste(size, collapse = ' x ')}.",
          call = call)
  }
  if (dims == 1L) {
    return(as.integer(bytes))
  }
  per <- size[2L] * size[3L]
  if (is.null(keep)) keep <- seq_len(size[1L])
  m <- matrix(bytes, nrow = per)[, keep, drop = FALSE]
  # each column is one image, row-major: pixel (r, c) at (r - 1) * cols + c
  a <- array(as.double(as.integer(m)), c(size[3L], size[2L], length(keep)))
  aperm(a, c(3L, 2L, 1L))
}
