# Every build option in one place.
option(TG_WERROR "Treat warnings as errors" ON)
set(TG_SANITIZE "" CACHE STRING "Sanitizers: empty, 'address;undefined' or 'thread'")
option(TG_BUILD_TESTS "Build unit tests and register the test suite with ctest" ON)
