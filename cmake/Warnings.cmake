# Warning set for our own code; generated and third-party code is exempt (see ProtobufC.cmake).
set(TG_WARNING_FLAGS
  -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wundef
  -Wcast-align -Wpointer-arith -Wnull-dereference -Wimplicit-fallthrough -Wvla)
function(tg_warnings target)
  target_compile_options(${target} PRIVATE ${TG_WARNING_FLAGS})
  if(TG_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()
