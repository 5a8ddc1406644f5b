/*
 * driver_families.h -- every family of drivers, instantiated for the data
 * type that the including block of driver.c defines (T, A, W, ST, SUF,
 * PRIMS_TYPE, NAME, LOCAL and the rest; see driver.c). Included by driver.c
 * only, once per data type.
 */
#include "driver_impl.h"
#include "driver_channel_impl.h"
#include "driver_weight_norm_impl.h"
#include "driver_axis_impl.h"
#include "driver_switch_impl.h"
#include "driver_batch_layer_impl.h"
