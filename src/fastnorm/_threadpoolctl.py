"""fastnorm's thread pool as a threadpoolctl library (threadpoolctl >= 3.5).

Imported by fastnorm only where threadpoolctl is installed. Once registered,
``threadpoolctl.threadpool_info()`` lists the pool (user_api and internal_api
"fastnorm") and ``threadpool_limits(n)`` sets its default thread count,
process-wide, as it sets OpenMP's and the BLAS libraries'. The controller
talks to the kernels through their exported C functions, found in the
extension module ``fastnorm._core``.
"""
import threadpoolctl


class FastnormController(threadpoolctl.LibController):
    user_api = "fastnorm"
    internal_api = "fastnorm"
    filename_prefixes = ("_core",)
    # A library merely named _core.* is not fastnorm's: it lacks these.
    check_symbols = ("fastnorm_set_max_threads",)

    def get_num_threads(self):
        return self.dynlib.fastnorm_max_threads()

    def set_num_threads(self, num_threads):
        # None or < 1: back to OMP_NUM_THREADS / the CPU affinity
        self.dynlib.fastnorm_set_max_threads(int(num_threads) if num_threads else 0)

    def get_version(self):
        n = self.dynlib.fastnorm_version_number()
        return f"{n // 10000}.{n // 100 % 100}.{n % 100}"

    def set_additional_attributes(self):
        self.threads = "fastnorm pool" if self.dynlib.fastnorm_has_threads() else "serial"


def register():
    """Registers the controller with threadpoolctl, if it is recent enough."""
    if hasattr(threadpoolctl, "register") and FastnormController not in _registered:
        threadpoolctl.register(FastnormController)
        _registered.append(FastnormController)


_registered: list = []
