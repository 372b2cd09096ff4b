/* h5io.c: HDF5 plumbing shared by weights.c and h5features.c (h5io.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include "files.h"
#include "h5io.h"

void an_h5_quiet_begin(an_h5_quiet *q)
{
    q->func = NULL;
    q->data = NULL;
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void an_h5_quiet_end(const an_h5_quiet *q)
{
    H5Eclear2(H5E_DEFAULT);
    H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

static herr_t detail_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    char *buf = data;
    if (n == 0 && e && e->desc) snprintf(buf, 160, "%s", e->desc);
    return 0;
}

/* HDF5's most specific complaint about the last failure, on one line (just
 * the system's message where HDF5 quotes one), then clears the stack. */
const char *an_h5_detail(char buf[160])
{
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, detail_cb, buf);
    H5Eclear2(H5E_DEFAULT);
    const char *quoted = strstr(buf, "error message = '");
    if (quoted) {
        quoted += strlen("error message = '");
        size_t n = strcspn(quoted, "'");
        memmove(buf, quoted, n);
        buf[n] = '\0';
    }
    for (char *c = buf; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    if (!buf[0]) snprintf(buf, 160, "no detail from HDF5");
    return buf;
}

void an_h5_close(hid_t *id)
{
    if (*id < 0) return;
    switch (H5Iget_type(*id)) {
    case H5I_FILE: H5Fclose(*id); break;
    case H5I_GROUP: H5Gclose(*id); break;
    case H5I_DATASET: H5Dclose(*id); break;
    case H5I_ATTR: H5Aclose(*id); break;
    case H5I_DATASPACE: H5Sclose(*id); break;
    case H5I_DATATYPE: H5Tclose(*id); break;
    case H5I_GENPROP_LST: H5Pclose(*id); break;
    default: break;
    }
    *id = -1;
}

/* HDF5 builds the file in memory (the core driver, no backing store) and
 * this code writes it out: HDF5 1.10 cannot recover from a failed write
 * (after a failed H5Fclose the library crashes at exit), so a full disk must
 * never reach it. The callbacks hand the image over at close instead of
 * freeing it, which saves a copy. */

static void *image_malloc(size_t size, H5FD_file_image_op_t op, void *udata)
{
    (void)op;
    ((an_h5_image *)udata)->size = size;
    return malloc(size);
}

static void *image_memcpy(void *dst, const void *src, size_t size, H5FD_file_image_op_t op, void *udata)
{
    (void)op;
    (void)udata;
    return memcpy(dst, src, size);
}

static void *image_realloc(void *ptr, size_t size, H5FD_file_image_op_t op, void *udata)
{
    (void)op;
    void *p = realloc(ptr, size);
    if (p) ((an_h5_image *)udata)->size = size;
    return p;
}

static herr_t image_free(void *ptr, H5FD_file_image_op_t op, void *udata)
{
    an_h5_image *im = udata;
    if (op == H5FD_FILE_IMAGE_OP_FILE_CLOSE && !im->mem) im->mem = ptr;
    else free(ptr);
    return 0;
}

static void *image_udata_copy(void *udata) { return udata; }
static herr_t image_udata_free(void *udata) { (void)udata; return 0; }

/* the version 2 or 3 superblock of the 1.8 format that an_h5_create_in_memory asks for */
size_t an_h5_image_length(const an_h5_image *im)
{
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    const unsigned char *m = im->mem;
    if (im->size < 48 || memcmp(m, sig, 8) != 0 || (m[8] != 2 && m[8] != 3) || m[9] != 8) return im->size;
    uint64_t base = 0, eof = 0;
    for (int i = 7; i >= 0; i--) {
        base = base << 8 | m[12 + i];
        eof = eof << 8 | m[28 + i];
    }
    return base == 0 && eof >= 48 && eof <= im->size ? (size_t)eof : im->size;
}

/* write all of it, through EINTR; -1 with errno set */
static int write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = ENOSPC;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

hid_t an_h5_create_in_memory(const char *mem_name, size_t bytes, an_h5_image *im)
{
    H5FD_file_image_callbacks_t cb = {image_malloc, image_memcpy, image_realloc, image_free,
                                      image_udata_copy, image_udata_free, im};
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS);
    int bad = fcpl < 0 || fapl < 0 || H5Pset_fapl_core(fapl, bytes, 0) < 0 ||
              H5Pset_file_image_callbacks(fapl, &cb) < 0 ||
              /* dense attribute storage: an attribute may exceed the 64 KB of an object
               * header (needs the 1.8 file format, read by any HDF5 since 2008) */
              H5Pset_attr_phase_change(fcpl, 0, 0) < 0 ||
              H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0;
    hid_t file = bad ? -1 : H5Fcreate(mem_name, H5F_ACC_TRUNC, fcpl, fapl);
    an_h5_close(&fcpl);
    an_h5_close(&fapl);
    return file;
}

an_status an_h5_check_readable(const char *path, const char *what, long long *bytes)
{
    int fd;
    an_status opened = an_open_regular(path, what, &fd, bytes);
    if (opened == AN_OK) close(fd);
    return opened;
}

/* The folder of `path` (a copy to free), "." for a bare name. */
static char *parent_of(const char *path)
{
    size_t len = strlen(path);
    char *dir = malloc(len + 2);
    if (!dir) return NULL;
    memcpy(dir, path, len + 1);
    char *slash = strrchr(dir, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    return dir;
}

/* Temporary files that saves killed on this machine left in the folder of
 * `path`: NAME.tmp-PID whose process is gone, a regular file that is empty
 * or an HDF5 image (a save writes nothing else there). Best effort. */
static void remove_stale_temps(const char *path)
{
    char *dir = parent_of(path);
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        const char *tag = strstr(e->d_name, ".tmp-");
        if (!tag || tag == e->d_name) continue;
        const char *digits = tag + 5;
        while ((tag = strstr(digits, ".tmp-")) != NULL) digits = tag + 5;   /* the last one */
        char *end;
        long pid = strtol(digits, &end, 10);
        if (*digits < '0' || *digits > '9' || *end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;   /* alive, or not ours to know */
        size_t n = strlen(dir) + strlen(e->d_name) + 2;
        char *file = malloc(n);
        if (!file) break;
        snprintf(file, n, "%s/%s", dir, e->d_name);
        struct stat st;
        unsigned char head[8] = {0};
        int fd = open(file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        int ours = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
                   (st.st_size == 0 || (read(fd, head, 8) == 8 && memcmp(head, "\211HDF\r\n\032\n", 8) == 0));
        if (fd >= 0) close(fd);
        if (ours) unlink(file);
        free(file);
    }
    if (d) closedir(d);
    free(dir);
}

/* flush the folder holding `path`, so that a rename into it survives a crash */
static void sync_parent(const char *path)
{
    char *dir = parent_of(path);
    if (!dir) return;
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);   /* best effort: some file systems refuse it for folders */
        close(fd);
    }
    free(dir);
}

an_status an_h5_write_file(const char *path, const char *what, an_h5_builder build, void *ctx)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return an_fail(AN_ERR_IO, "cannot %s '%s': it is a directory", what, path);
    remove_stale_temps(path);
    size_t len = strlen(path) + 48;
    char *tmp = malloc(len), *mem_name = malloc(len + 16);
    if (!tmp || !mem_name) {
        free(tmp);
        free(mem_name);
        return an_fail(AN_ERR_MEMORY, "cannot %s '%s': out of memory", what, path);
    }
    snprintf(tmp, len, "%s.tmp-%ld", path, (long)getpid());
    /* HDF5's name for the in-memory file: it only looks whether such a file exists */
    snprintf(mem_name, len + 16, "%s.in-memory", tmp);
    /* first, so that a missing or read-only folder fails before any work */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) {
        an_status s = an_fail(AN_ERR_IO, "cannot %s '%s': cannot create '%s': %s", what, path, tmp, strerror(errno));
        free(tmp);
        free(mem_name);
        return s;
    }
    an_h5_quiet q;
    an_h5_quiet_begin(&q);
    an_h5_image im = {NULL, 0};
    an_status s = build(ctx, mem_name, &im);
    an_h5_quiet_end(&q);
    free(mem_name);
    if (s == AN_OK && write_all(fd, im.mem, an_h5_image_length(&im)) != 0)
        s = an_fail(AN_ERR_IO, "cannot %s '%s': writing '%s' failed: %s", what, path, tmp, strerror(errno));
    free(im.mem);
    /* on disk before it replaces the old file */
    if (s == AN_OK && fsync(fd) != 0)
        s = an_fail(AN_ERR_IO, "cannot %s '%s': flushing '%s' failed: %s", what, path, tmp, strerror(errno));
    if (close(fd) != 0 && s == AN_OK)
        s = an_fail(AN_ERR_IO, "cannot %s '%s': closing '%s' failed: %s", what, path, tmp, strerror(errno));
    if (s == AN_OK && rename(tmp, path) != 0)
        s = an_fail(AN_ERR_IO, "cannot %s '%s': renaming '%s' to it failed: %s", what, path, tmp, strerror(errno));
    if (s != AN_OK) unlink(tmp);
    else sync_parent(path);
    free(tmp);
    return s;
}
