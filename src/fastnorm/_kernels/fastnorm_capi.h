/*
 * fastnorm_capi.h -- fastnorm's kernels for other Python extension modules,
 * without linking them: the entry points of fastnorm.h are reached through
 * the table that the installed fastnorm package exports as the capsule
 * fastnorm._core._C_API. The calls run the package's own compiled kernels
 * (its kernel selection, its thread pool).
 *
 * Use: include this header after Python.h (fastnorm.get_include() is its
 * folder), call fastnorm_import() once with the GIL held -- at module
 * initialization, say -- and then call the fastnorm_* functions of
 * fastnorm.h by their names, with or without the GIL. fastnorm/kernels.pxd
 * declares the same for Cython.
 *
 * fastnorm_import() returns 0, or -1 with a Python exception set (fastnorm
 * not importable, or older than this header). A call made before it imports
 * the table on the spot (taking the GIL for that moment) and ends the
 * process with a message if that fails.
 *
 * Every name below is a macro: a translation unit that includes this header
 * cannot also define or take the address of a fastnorm_* function as a
 * linked symbol. Each translation unit holds its own table pointer.
 */
#ifndef FASTNORM_CAPI_H
#define FASTNORM_CAPI_H

#include <Python.h>

#include "fastnorm.h"

#define FASTNORM_CAPSULE_NAME "fastnorm._core._C_API"

static const fastnorm_api_table *fastnorm_capi_table = NULL;

static inline int fastnorm_import(void) {
    const fastnorm_api_table *t;
    if (fastnorm_capi_table) return 0;
    t = (const fastnorm_api_table *)PyCapsule_Import(FASTNORM_CAPSULE_NAME, 0);
    if (!t) return -1;
    if (t->table_version != FASTNORM_API_TABLE_VERSION ||
        t->table_size < (int)sizeof(fastnorm_api_table)) {
        PyErr_Format(PyExc_ImportError,
                     "the installed fastnorm (C API table version %d, %d bytes, release %d) "
                     "does not provide what this module was compiled for (version %d, %d "
                     "bytes, release %d): install a newer fastnorm",
                     t->table_version, t->table_size, t->version_number,
                     FASTNORM_API_TABLE_VERSION, (int)sizeof(fastnorm_api_table),
                     FASTNORM_VERSION_NUMBER);
        return -1;
    }
    fastnorm_capi_table = t;
    return 0;
}

/* The table, imported on first use when fastnorm_import() was not called. */
static inline const fastnorm_api_table *fastnorm_capi(void) {
    PyGILState_STATE gil;
    if (fastnorm_capi_table) return fastnorm_capi_table;
    gil = PyGILState_Ensure();
    if (fastnorm_import() < 0) {
        PyErr_Print();
        Py_FatalError("fastnorm: the C API capsule " FASTNORM_CAPSULE_NAME
                      " could not be imported (call fastnorm_import() at module "
                      "initialization to get a Python exception instead)");
    }
    PyGILState_Release(gil);
    return fastnorm_capi_table;
}

/* The entry points of fastnorm.h by name: fastnorm_layer_norm_f32 is
 * (fastnorm_capi()->layer_norm_f32), and so on for every member. */
#include "fastnorm_capi_names.h"

#endif /* FASTNORM_CAPI_H */
