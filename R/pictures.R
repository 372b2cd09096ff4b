# What the network sees: activation maps, Grad-CAM and first-layer filters,
# as arrays and as pictures (base graphics).

# The layers with maps: conv_1 .. convpool_5 (the engine's outputs before
# the first dense layer) of the net's variant.
map_layers <- function(net) {
  outs <- alexnet_layers(net)
  outs[seq_len(match("convpool_5", outs))]
}

check_map_layer <- function(layer, net, arg = caller_arg(layer), call = caller_env()) {
  force(arg)
  layer <- check_layer(layer, net, arg = arg, call = call)
  if (!layer %in% map_layers(net)) {
    abort(c("{.arg {arg}} is {.val {layer}}, a dense layer: it has no maps.",
            i = "Use one of {.val {map_layers(net)}}; {.fn alexnet_features} gives any layer's values."),
          call = call)
  }
  layer
}

# the shape of a named output, per image, from the engine
output_shape <- function(net, layer) {
  outs <- .Call(C_net_outputs, net$ptr)
  k <- match(layer, outs$name)
  c(channels = outs$c[k], height = outs$h[k], width = outs$w[k])
}

#' Activation maps of a layer
#'
#' The output of a convolution, pooling or LRN layer for each image, as maps:
#' one `height x width` map per channel. The values are those of
#' [alexnet_features()] for the same layer, not flattened.
#'
#' @param net A network made by [alexnet()].
#' @param x Images, as for [alexnet_features()]: an array of pixels, an
#'   [image_array()], an [image_folder()] or JPEG file paths.
#' @param layer A layer with maps: `conv_1` to `convpool_5` (see
#'   [alexnet_layers()]). By default `conv_5`, the last convolution.
#' @param batch_size Images per forward pass.
#' @return An object of class `"alexnet_activations"`: a numeric array
#'   `c(n, channels, height, width)` with attributes `layer` and, where the
#'   images have them, `labels`. [plot()][plot.alexnet_activations] draws the
#'   strongest maps of one image.
#' @seealso [alexnet_gradcam()], [plot_filters()]
#' @export
#' @examples
#' net <- alexnet(classes = 2, seed = 1)
#' x <- array(runif(2 * 64 * 64 * 3, 0, 255), c(2, 64, 64, 3))
#' a <- alexnet_activations(net, x, layer = "pool_1")
#' dim(a)
alexnet_activations <- function(net, x, layer = "conv_5", batch_size = 32) {
  check_net(net)
  layer <- check_map_layer(layer, net)
  f <- alexnet_features(net, x, layer = layer, batch_size = batch_size)
  s <- output_shape(net, layer)
  # each row is (channel, row, column), row-major
  structure(rows_to_array(f, s), class = "alexnet_activations", layer = layer, labels = attr(f, "labels"))
}

#' @export
print.alexnet_activations <- function(x, ...) {
  d <- dim(x)
  cat(sprintf("<alexnet_activations> %s: %d image%s, %d channels of %d x %d\n", attr(x, "layer"), d[1L],
              if (d[1L] == 1L) "" else "s", d[2L], d[3L], d[4L]))
  invisible(x)
}

#' Draw the strongest activation maps of one image
#'
#' @param x Activation maps from [alexnet_activations()].
#' @param image Which image (its index).
#' @param k How many channels: those with the largest mean activation.
#' @param ... Unused.
#' @return `x`, invisibly.
#' @export
plot.alexnet_activations <- function(x, image = 1, k = 16, ...) {
  d <- dim(x)
  image <- check_count(image)
  if (image > d[1L]) abort("{.arg image} is {image}, but there {cli::qty(d[1L])}{?is/are} {d[1L]} image{?s}.")
  k <- min(check_count(k), d[2L])
  maps <- x[image, , , , drop = TRUE]
  if (d[2L] == 1L) maps <- array(maps, c(1L, d[3L], d[4L]))
  strength <- apply(maps, 1L, mean)
  top <- order(strength, decreasing = TRUE)[seq_len(k)]
  cols <- ceiling(sqrt(k))
  rows <- ceiling(k / cols)
  old <- graphics::par(mfrow = c(rows, cols), mar = c(0.2, 0.2, 1.4, 0.2), oma = c(0, 0, 2, 0))
  on.exit(graphics::par(old))
  pal <- grDevices::hcl.colors(64, "viridis")
  for (ch in top) {
    m <- maps[ch, , ]
    show_matrix(m, pal, range(m))
    graphics::title(sprintf("channel %d", ch), cex.main = 0.8, font.main = 1)
  }
  label <- attr(x, "labels")
  graphics::mtext(sprintf("%s: the %d strongest of %d channels, image %d%s", attr(x, "layer"), k, d[2L], image,
                          if (!is.null(label)) sprintf(" (%s)", label[image]) else ""),
                  outer = TRUE, cex = 0.9)
  invisible(x)
}

# A matrix (rows top to bottom) as an image in the current plot region,
# coloured from `pal` over `lim`.
show_matrix <- function(m, pal, lim) {
  span <- if (diff(lim) > 0) diff(lim) else 1
  idx <- 1L + floor((length(pal) - 1) * (m - lim[1L]) / span)
  raster_panel(matrix(pal[pmin(pmax(idx, 1L), length(pal))], nrow(m), ncol(m)), interpolate = FALSE)
}

# A new panel filled by a raster (a matrix of colours or an h x w x 3 array
# of 0..1), one unit per pixel, square pixels.
raster_panel <- function(ras, interpolate = TRUE) {
  h <- dim(ras)[1L]
  w <- dim(ras)[2L]
  graphics::plot.new()
  graphics::plot.window(c(0, w), c(0, h), asp = 1, xaxs = "i", yaxs = "i")
  graphics::rasterImage(grDevices::as.raster(ras), 0, 0, w, h, interpolate = interpolate)
}

# An engine matrix whose rows are row-major c(d1, d2, ...) blocks, one per
# image, as an R array c(n, d1, d2, ...).
rows_to_array <- function(m, dims) {
  dims <- unname(dims)
  k <- length(dims)
  aperm(array(t(m), c(rev(dims), nrow(m))), c(k + 1L, rev(seq_len(k))))
}

#' Grad-CAM: where the evidence for a class lies
#'
#' Gradient-weighted class activation maps (Selvaraju et al. 2017): the
#' gradient of a class's score (its logit, before the softmax) with respect
#' to a layer's maps, averaged over each map, weights that map; their sum,
#' with negative values set to zero, shows where in the image the evidence
#' for the class lies. The engine computes it with its own forward and
#' backward passes, in inference mode (no dropout), leaving the weights and
#' the optimiser's state as they were.
#'
#' @param net A network made by [alexnet()].
#' @param x Images, as for [alexnet_features()].
#' @param class `NULL` (the default) for the class the network predicts for
#'   each image, or the class: a label of `net$labels` or a number from 1 to
#'   `net$classes`, one for all images or one per image.
#' @param layer A layer with maps, `conv_1` to `convpool_5`; by default
#'   `conv_5`, the last convolution, as in the paper.
#' @param batch_size Images per pass.
#' @return An object of class `"alexnet_gradcam"`: a numeric array
#'   `c(n, height, width)` of the layer's size (13 x 13 for `conv_5`), rows
#'   from the top of the image; `cam$class` is the class of each map (a
#'   factor of `net$labels`) and `cam$layer` the layer. It keeps `x` (in
#'   attribute `images`) for [plot()][plot.alexnet_gradcam].
#' @seealso [alexnet_activations()], [plot_filters()]
#' @export
#' @examples
#' net <- alexnet(classes = 2, seed = 1, labels = c("a", "b"))
#' x <- array(runif(2 * 64 * 64 * 3, 0, 255), c(2, 64, 64, 3))
#' cam <- alexnet_gradcam(net, x)
#' dim(cam)
#' cam$class
alexnet_gradcam <- function(net, x, class = NULL, layer = "conv_5", batch_size = 16) {
  check_net(net)
  layer <- check_map_layer(layer, net)
  batch_size <- check_count(batch_size)
  images <- as_source(x)
  n <- n_images(images)
  classes <- check_gradcam_class(class, net, n)
  check_batch_memory(net, n, batch_size, layer = layer, training = TRUE,
                     folder = inherits(images, "image_folder"))
  src <- new.env(parent = emptyenv())
  on.exit(close_sources(src))
  batch_source(images, net_input_size(net), src = src)
  res <- engine(.Call(C_loader_gradcam, src$ptr, net$ptr, seq_len(n), .Call(C_output_find, net$ptr, layer), classes,
                      as.integer(batch_size), src$skip))
  note_failures(src, res)
  m <- res$value
  used <- attr(m, "classes")
  s <- output_shape(net, layer)
  maps <- rows_to_array(m, s[c("height", "width")])
  structure(maps, class = "alexnet_gradcam", layer = layer,
            class_used = factor(net$labels[used + 1L], levels = net$labels), images = x,
            input_size = net_input_size(net))
}

# NULL -> -1 per image (predicted); labels or numbers -> 0-based integers
check_gradcam_class <- function(class, net, n, call = caller_env()) {
  if (is.null(class)) {
    return(rep(-1L, n))
  }
  if (is.factor(class)) class <- as.character(class)
  if (length(class) != 1L && length(class) != n) {
    abort("{.arg class} must be one class or one per image ({n}), not {length(class)}.", call = call)
  }
  if (is.character(class)) {
    k <- match(class, net$labels)
    if (anyNA(k)) {
      abort(c("{.arg class} {.val {class[is.na(k)][1L]}} is not a class of the network.",
              i = "Its classes: {.val {utils::head(net$labels, 10L)}}{if (net$classes > 10L) ', ...' else ''}."),
            call = call)
    }
  } else if (is.numeric(class) && !anyNA(class) && all(class == round(class))) {
    k <- as.integer(class)
    if (any(k < 1L | k > net$classes)) {
      abort("{.arg class} must lie in 1..{net$classes}, the network's classes.", call = call)
    }
  } else {
    abort("{.arg class} must be NULL, class labels or class numbers.", call = call)
  }
  rep_len(k - 1L, n)
}

# `attr(x, "class")` of a Grad-CAM result would be its S3 class: the
# classes of the maps are kept as "class_used" and read with this.
#' @export
`$.alexnet_gradcam` <- function(x, name) {
  switch(name, class = attr(x, "class_used"), layer = attr(x, "layer"), NULL)
}

#' @export
print.alexnet_gradcam <- function(x, ...) {
  d <- dim(x)
  cls <- attr(x, "class_used")
  cat(sprintf("<alexnet_gradcam> %s, %d image%s, maps of %d x %d; class%s: %s\n", attr(x, "layer"), d[1L],
              if (d[1L] == 1L) "" else "s", d[2L], d[3L], if (length(unique(cls)) == 1L) "" else "es",
              paste(utils::head(as.character(cls), 6L), collapse = ", ")))
  invisible(x)
}

#' Draw Grad-CAM maps over their images
#'
#' Each image as the network saw it (227 x 227, after the resize), its map
#' upsampled over it (bilinear), semi-transparent, with a colour bar; several
#' images side by side.
#'
#' @param x Maps from [alexnet_gradcam()].
#' @param image Which images (indices).
#' @param alpha Opacity of the maps, 0 to 1.
#' @param titles One title per image; by default the class and layer.
#' @param ... Unused.
#' @return `x`, invisibly.
#' @export
plot.alexnet_gradcam <- function(x, image = 1, alpha = 0.5, titles = NULL, ...) {
  d <- dim(x)
  if (!is.numeric(image) || length(image) < 1L || anyNA(image) || any(image != round(image)) ||
      any(image < 1 | image > d[1L])) {
    abort("{.arg image} must be image numbers in 1..{d[1L]}.")
  }
  check_number(alpha, min = 0, max = 1)
  if (is.null(titles)) {
    titles <- sprintf("%s (image %d) at %s", as.character(attr(x, "class_used")[image]), image, attr(x, "layer"))
  }
  pal <- grDevices::hcl.colors(64, "inferno")
  old <- graphics::par(no.readonly = TRUE)
  on.exit(graphics::par(old))
  graphics::layout(matrix(seq_len(2L * length(image)), 1L), widths = rep(c(6, 1), length(image)))
  photos <- seen_images(attr(x, "images"), image, attr(x, "input_size"))
  for (k in seq_along(image)) {
    photo <- photos[k, , , ]
    size <- dim(photo)[1L]
    cam <- upsample(x[image[k], , ], size)
    top <- max(cam, 1e-30)
    graphics::par(mar = c(0.5, 0.5, 2, 0.5))
    raster_panel(photo)
    idx <- 1L + floor(63 * cam / top)
    overlay <- matrix(grDevices::adjustcolor(pal, alpha.f = alpha)[idx], size, size)
    graphics::rasterImage(grDevices::as.raster(overlay), 0, 0, size, size)
    graphics::title(titles[k], cex.main = 0.9, font.main = 1)
    graphics::par(mar = c(2, 0.3, 2, 3.2))
    graphics::plot.new()
    graphics::plot.window(c(0, 1), c(0, top), xaxs = "i", yaxs = "i")
    graphics::rasterImage(grDevices::as.raster(matrix(rev(pal), ncol = 1L)), 0, 0, 1, top)
    graphics::axis(4, las = 1, cex.axis = 0.7)
  }
  invisible(x)
}

# The RGB images (0..1, c(k, rows, columns, 3)) a network of input `size`
# saw for images `index` of `x`: the engine loader's own input, so a file
# and an array show the same resize.
seen_images <- function(x, index, size) {
  pmin(pmax(source_pixels(as_source(x), index, size = size)$pixels / 255, 0), 1)
}

# Bilinear upsampling of a map (rows top to bottom) to size x size, centres
# aligned as the engine's resize aligns them.
upsample <- function(m, size) {
  interp <- function(n) {
    pos <- (seq_len(size) - 0.5) * n / size + 0.5
    lo <- pmin(pmax(floor(pos), 1), n)
    hi <- pmin(lo + 1, n)
    w <- pmin(pmax(pos - lo, 0), 1)
    list(lo = lo, hi = hi, w = w)
  }
  r <- interp(nrow(m))
  c <- interp(ncol(m))
  rows <- m[r$lo, , drop = FALSE] * (1 - r$w) + m[r$hi, , drop = FALSE] * r$w
  rows[, c$lo, drop = FALSE] * rep(1 - c$w, each = size) + rows[, c$hi, drop = FALSE] * rep(c$w, each = size)
}

#' Draw a convolution's filters
#'
#' The filters of a convolutional layer as a grid of small images: for
#' `conv_1` the famous picture of AlexNet's 96 RGB filters (11 x 11), each
#' scaled to its own range; for deeper layers, the first input channel of
#' each filter in grey.
#'
#' @param net A network made by [alexnet()].
#' @param layer A convolutional layer: `conv_1` (the default) to `conv_5`.
#' @param n How many filters (the first `n`); all by default.
#' @return The filters, invisibly: an array `c(out, in, height, width)`.
#' @seealso [alexnet_activations()], [alexnet_gradcam()]
#' @export
#' @examples
#' net <- alexnet(classes = 2, seed = 1)
#' plot_filters(net)
plot_filters <- function(net, layer = "conv_1", n = NULL) {
  check_net(net)
  convs <- .param_layers[startsWith(.param_layers, "conv_")]
  if (!is.character(layer) || length(layer) != 1L || !layer %in% convs) {
    abort("{.arg layer} must be one of {.val {convs}}.")
  }
  w <- .Call(C_net_layer_weights, net$ptr, match(layer, .param_layers) - 1L)
  w <- aperm(w, c(4L, 3L, 2L, 1L))    # out, in, row, column
  total <- dim(w)[1L]
  n <- if (is.null(n)) total else min(check_count(n), total)
  cols <- ceiling(sqrt(n * 1.5))
  rows <- ceiling(n / cols)
  old <- graphics::par(mfrow = c(rows, cols), mar = c(0.15, 0.15, 0.15, 0.15), oma = c(0, 0, 2, 0))
  on.exit(graphics::par(old))
  rgb <- dim(w)[2L] == 3L
  for (k in seq_len(n)) {
    f <- w[k, , , , drop = FALSE]
    lim <- range(f)
    span <- if (diff(lim) > 0) diff(lim) else 1
    scaled <- (f - lim[1L]) / span
    ras <- if (rgb) {
      grDevices::rgb(scaled[1, 1, , ], scaled[1, 2, , ], scaled[1, 3, , ])
    } else {
      grDevices::grey(scaled[1, 1, , ])
    }
    raster_panel(matrix(ras, dim(w)[3L], dim(w)[4L]), interpolate = FALSE)
  }
  graphics::mtext(sprintf("%s: %d of %d filters, %d x %d%s", layer, n, total, dim(w)[3L], dim(w)[4L],
                          if (rgb) " (RGB, each scaled to its own range)" else " (first input channel)"),
                  outer = TRUE, cex = 0.9)
  invisible(w)
}
