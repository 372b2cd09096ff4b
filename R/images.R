# Pixel arrays and the small "image_array" class that carries labels.

#' Images with labels
#'
#' Bundles an array of pixels with one label per image, so that
#' [alexnet_features()] returns the labels with the features.
#'
#' @section Layout of the pixels:
#' A numeric array with `dim = c(n, height, width, channels)`: image, row
#' (top to bottom), column (left to right), channel. `channels` is 3 (red,
#' green, blue) or 1 (grey); a 3-d array `c(n, height, width)` is taken as
#' grey, except that one whose last dimension is 3 is refused (one RGB image
#' without its image dimension is the likelier meaning). Values are on the
#' 0..255 scale: values outside it are an error, and arrays whose values all
#' lie in 0..1 give a warning (multiply by 255); there must be no `NA`, `NaN`
#' or infinite value. Any height and width are accepted: images are resized
#' to the network's input (227 x 227; 224 x 224 for the torchvision variant
#' of [alexnet()]) inside the package exactly as a JPEG file of the same pixels
#' is by [image_folder()] (where an image is k >= 2 times larger, k x k
#' blocks are averaged first; then it is sampled bilinearly with half-pixel
#' centres); a 227 x 227 image is used as it is. To pass a single image `img` with `dim = c(height, width, 3)`, use
#' `array(img, c(1, dim(img)))`.
#'
#' @param x A numeric array of pixels (see the layout below).
#' @param labels `NULL`, or one label per image: a factor, or a vector that
#'   is turned into one with [factor()].
#' @return An object of class `"image_array"`: a list with `pixels` (the
#'   array, double or integer as given) and `labels` (a factor or `NULL`). It can be
#'   subset by image with `[`.
#' @export
#' @examples
#' px <- array(runif(4 * 28 * 28, 0, 255), dim = c(4, 28, 28))
#' imgs <- image_array(px, labels = c("a", "b", "a", "b"))
#' imgs
#' imgs[1:2]
image_array <- function(x, labels = NULL) {
  if (inherits(x, "image_array")) {
    if (is.null(labels)) {
      labels <- x$labels
    }
    x <- x$pixels
  }
  x <- check_pixels(x)
  labels <- check_labels(labels, dim(x)[1L])
  structure(list(pixels = x, labels = labels), class = "image_array")
}

#' @export
print.image_array <- function(x, ...) {
  d <- dim(x$pixels)
  ch <- if (length(d) == 3L || d[4L] == 1L) "grey" else "RGB"
  cat(sprintf("<image_array> %d image%s of %d x %d pixels, %s\n",
              d[1L], if (d[1L] == 1L) "" else "s", d[2L], d[3L], ch))
  if (is.null(x$labels)) {
    cat("no labels\n")
  } else {
    tab <- table(x$labels)
    cat(sprintf("labels: %s\n", paste(sprintf("%s (%d)", names(tab), as.integer(tab)),
                                      collapse = ", ")))
  }
  invisible(x)
}

#' @export
`[.image_array` <- function(x, i) {
  d <- dim(x$pixels)
  px <- if (length(d) == 3L) x$pixels[i, , , drop = FALSE] else x$pixels[i, , , , drop = FALSE]
  lab <- if (is.null(x$labels)) NULL else x$labels[i]
  structure(list(pixels = px, labels = lab), class = "image_array")
}

# Validate a pixel array (double or integer: the engine reads both as they
# are). With `scan` FALSE only its type and shape: a run over every image
# (source_forward()) checks the values as the engine converts them.
check_pixels <- function(x, arg = caller_arg(x), call = caller_env(), scan = TRUE) {
  layout <- "an array with {.code dim = c(n, height, width, channels)} (channels 1 or 3) or {.code c(n, height, width)} (grey)"
  if (is.data.frame(x) || !is.numeric(x)) {
    type <- if (is.data.frame(x)) "a data frame" else paste0("of type ", typeof(x))
    abort(c("{.arg {arg}} must be a numeric array of pixels, not {type}.",
            i = paste("Expected", layout, "with values in 0..255.")), call = call)
  }
  d <- dim(x)
  if (length(d) != 3L && length(d) != 4L) {
    got <- if (is.null(d)) "no dimensions" else paste0("dim c(", paste(d, collapse = ", "), ")")
    hint <- if (length(d) == 2L) {
      c(i = "For a single grey image {.code img}, use {.code array(img, c(1, dim(img)))}.")
    }
    abort(c("{.arg {arg}} has {got}.", x = paste0("It must be ", layout, "."), hint),
          call = call)
  }
  if (length(d) == 3L && d[3L] == 3L) {
    abort(c("{.arg {arg}} has dim c({paste(d, collapse = ', ')}): one RGB image without its image dimension, or {d[1L]} grey images {d[3L]} pixels wide?",
            i = "For one RGB image {.code img}, use {.code array(img, c(1, dim(img)))}; for grey images, {.code dim = c(n, height, width, 1)}."),
          call = call)
  }
  if (any(d[1:3] < 1L)) {
    abort("{.arg {arg}} must hold at least one image of at least 1 x 1 pixels (its dim is c({paste(d, collapse = ', ')})).",
          call = call)
  }
  if (length(d) == 4L && !d[4L] %in% c(1L, 3L)) {
    hint <- if (d[2L] %in% c(1L, 3L)) {
      c(i = "Channels come last: permute a channels-first array with {.code aperm(x, c(1, 3, 4, 2))}.")
    }
    abort(c("{.arg {arg}} has {d[4L]} channels: it must have 1 (grey) or 3 (RGB).",
            i = "The layout is {.code dim = c(n, height, width, channels)}.", hint),
          call = call)
  }
  if (scan) check_pixel_values(x, .Call(C_check_pixels, x), arg, call)
  x
}

# The values' verdict: `values` is c(first non-finite (1-based, 0: none),
# min, max), or c(NA, min, max) where a conversion saw a non-finite value
# without its place (the scan then finds it).
check_pixel_values <- function(x, values, arg, call) {
  if (is.na(values[1L])) values <- .Call(C_check_pixels, x)
  if (values[1L] > 0) {
    d <- dim(x)
    bad <- values[1L]
    image <- (bad - 1) %% d[1L] + 1
    v <- x[bad]
    abort("{.arg {arg}} has a missing or non-finite pixel ({v}) in image {image}.",
          call = call)
  }
  if (values[2L] < 0 || values[3L] > 255) {
    abort(c("{.arg {arg}} has pixel values from {format(values[2L])} to {format(values[3L])}: they must lie in 0..255.",
            i = "The network subtracts its own mean: give it the pixels as they are (0..255), not centred or rescaled ones."),
          call = call)
  }
  if (values[3L] <= 1 && values[3L] > 0) {
    cli::cli_warn(c("Every pixel of {.arg {arg}} lies in 0..{format(values[3L])}: images on the 0..1 scale?",
                    i = "The network expects 0..255: multiply by 255 ({.code x * 255})."),
                  call = call)
  }
  invisible()
}

# What forward() reads: an image_folder as it is, JPEG paths as
# image_files() makes them, or the pixels and labels of an array. `scan`
# FALSE: the pixels' values are left to source_forward() (they then carry
# `arg`, the argument they came from).
as_source <- function(x, arg = caller_arg(x), call = caller_env(), scan = TRUE) {
  if (inherits(x, "image_folder")) return(x)
  if (is.character(x) && is.null(dim(x))) {   # a character array is misused pixels
    if (length(x) == 0L) abort("{.arg {arg}} is an empty vector of file names: there are no images.", call = call)
    return(image_files(x))
  }
  as_images(x, arg = arg, call = call, scan = scan)
}

# Pixels and labels of an image_array or a plain array.
as_images <- function(x, arg = caller_arg(x), call = caller_env(), scan = TRUE) {
  labels <- if (inherits(x, "image_array")) x$labels
  if (inherits(x, "image_array")) x <- x$pixels
  list(pixels = check_pixels(x, arg = arg, call = call, scan = scan), labels = labels,
       unscanned = if (!scan) arg)
}
