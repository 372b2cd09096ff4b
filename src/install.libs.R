# src/install.libs.R: installs alexnet.so and, where configure built it (the
# Makevars it wrote names it), the GPU backend alexnet_cuda.so into the
# package's libs/ directory, side by side: the engine loads the backend from
# the directory alexnet.so is in. A backend left over from an earlier build
# is not installed.
makevars <- readLines("Makevars")
backend <- sub("^CUDA_BACKEND *= *", "", grep("^CUDA_BACKEND *=", makevars, value = TRUE))
files <- c(paste0("alexnet", SHLIB_EXT), backend[nzchar(backend)])
dest <- file.path(R_PACKAGE_DIR, paste0("libs", R_ARCH))
dir.create(dest, recursive = TRUE, showWarnings = FALSE)
stopifnot(all(file.copy(files, dest, overwrite = TRUE)))
if (file.exists("symbols.rds")) file.copy("symbols.rds", dest, overwrite = TRUE)
