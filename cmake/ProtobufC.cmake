# Generates C from proto/ with protoc-c at build time (never committed) into ${TG_GEN_DIR}
# and builds it as the static library tfproto. google/protobuf/{wrappers,any}.proto come from
# libprotobuf-dev under /usr/include; protobuf-c ships no generated code for them.
find_program(PROTOC_C NAMES protoc-c protoc-gen-c REQUIRED)
set(TG_PROTO_DIR ${PROJECT_SOURCE_DIR}/proto)
set(TG_GEN_DIR ${PROJECT_BINARY_DIR}/gen)
set(TG_WKT_DIR /usr/include CACHE PATH "Directory holding google/protobuf/*.proto")

file(GLOB_RECURSE _protos RELATIVE ${TG_PROTO_DIR} CONFIGURE_DEPENDS ${TG_PROTO_DIR}/*.proto)
set(_wkt google/protobuf/wrappers.proto google/protobuf/any.proto)
set(_srcs)
set(_hdrs)
foreach(p IN LISTS _protos _wkt)
  string(REGEX REPLACE "\\.proto$" "" stem ${p})
  list(APPEND _srcs ${TG_GEN_DIR}/${stem}.pb-c.c)
  list(APPEND _hdrs ${TG_GEN_DIR}/${stem}.pb-c.h)
endforeach()
list(TRANSFORM _protos PREPEND ${TG_PROTO_DIR}/ OUTPUT_VARIABLE _abs_protos)

add_custom_command(
  OUTPUT ${_srcs} ${_hdrs}
  COMMAND ${CMAKE_COMMAND} -E make_directory ${TG_GEN_DIR}
  COMMAND ${PROTOC_C} -I${TG_PROTO_DIR} -I${TG_WKT_DIR} --c_out=${TG_GEN_DIR} ${_protos} ${_wkt}
  WORKING_DIRECTORY ${TG_PROTO_DIR}
  DEPENDS ${_abs_protos}
  COMMENT "protoc-c: generating C for ${TG_PROTO_DIR}"
  VERBATIM)

add_library(tfproto STATIC ${_srcs})
target_include_directories(tfproto SYSTEM PUBLIC ${TG_GEN_DIR})
target_link_libraries(tfproto PUBLIC PkgConfig::PROTOBUFC)
set_target_properties(tfproto PROPERTIES POSITION_INDEPENDENT_CODE ON)
