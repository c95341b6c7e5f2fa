# TG_SANITIZE="address;undefined" builds everything (generated code included) with ASan and
# UBSan; findings abort, so they fail the test that caused them.
if(TG_SANITIZE)
  string(REPLACE ";" "," _san "${TG_SANITIZE}")
  add_compile_options(-fsanitize=${_san} -fno-omit-frame-pointer)
  if(TG_SANITIZE MATCHES "undefined")
    add_compile_options(-fno-sanitize-recover=undefined)
  endif()
  add_link_options(-fsanitize=${_san})
endif()
