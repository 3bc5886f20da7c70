# Generated protobuf/gRPC code lives in two library targets:
# - fairserve::model_config_proto: Triton's ModelConfig message only, which
#   the models component parses config.pbtxt files with (no gRPC);
# - fairserve::proto: the services and everything else.
set(PROTO_GEN_DIR ${CMAKE_BINARY_DIR}/gen)
file(MAKE_DIRECTORY ${PROTO_GEN_DIR})
find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)

# Appends the generated sources of each proto (relative to proto/) to `out`.
function(fairserve_protoc out)
  set(srcs)
  foreach(rel ${ARGN})
    set(proto ${CMAKE_SOURCE_DIR}/proto/${rel})
    string(REGEX REPLACE "\\.proto$" "" base ${rel})
    set(outs
      ${PROTO_GEN_DIR}/${base}.pb.cc ${PROTO_GEN_DIR}/${base}.pb.h
      ${PROTO_GEN_DIR}/${base}.grpc.pb.cc ${PROTO_GEN_DIR}/${base}.grpc.pb.h)
    add_custom_command(
      OUTPUT ${outs}
      COMMAND protobuf::protoc
        --proto_path=${CMAKE_SOURCE_DIR}/proto
        --cpp_out=${PROTO_GEN_DIR}
        --grpc_out=${PROTO_GEN_DIR}
        --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN}
        ${proto}
      DEPENDS ${proto}
      COMMENT "protoc ${rel}")
    list(APPEND srcs ${PROTO_GEN_DIR}/${base}.pb.cc)
    if(NOT rel STREQUAL "inference/model_config.proto")
      list(APPEND srcs ${PROTO_GEN_DIR}/${base}.grpc.pb.cc)
    endif()
  endforeach()
  set(${out} ${srcs} PARENT_SCOPE)
endfunction()

fairserve_protoc(MODEL_CONFIG_PROTO_SRCS inference/model_config.proto)
add_library(fairserve_model_config_proto STATIC ${MODEL_CONFIG_PROTO_SRCS})
add_library(fairserve::model_config_proto ALIAS fairserve_model_config_proto)
target_include_directories(fairserve_model_config_proto SYSTEM PUBLIC ${PROTO_GEN_DIR})
target_link_libraries(fairserve_model_config_proto PUBLIC protobuf::libprotobuf)
target_compile_options(fairserve_model_config_proto PRIVATE -w)

fairserve_protoc(PROTO_SRCS
  inference/grpc_service.proto
  fairserve/admin/v1/admin.proto
  google/rpc/status.proto
  google/rpc/error_details.proto)
add_library(fairserve_proto STATIC ${PROTO_SRCS})
add_library(fairserve::proto ALIAS fairserve_proto)
target_include_directories(fairserve_proto SYSTEM PUBLIC ${PROTO_GEN_DIR})
target_link_libraries(fairserve_proto PUBLIC fairserve::model_config_proto gRPC::grpc++)
target_compile_options(fairserve_proto PRIVATE -w)
