# All protobuf/gRPC generated code lives in one library target, fairserve::proto.
set(FAIRSERVE_PROTOS
  ${CMAKE_SOURCE_DIR}/proto/inference/grpc_service.proto
  ${CMAKE_SOURCE_DIR}/proto/fairserve/admin/v1/admin.proto
)
set(PROTO_GEN_DIR ${CMAKE_BINARY_DIR}/gen)
file(MAKE_DIRECTORY ${PROTO_GEN_DIR})
find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)

set(PROTO_SRCS)
foreach(proto ${FAIRSERVE_PROTOS})
  file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR}/proto ${proto})
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
  list(APPEND PROTO_SRCS ${PROTO_GEN_DIR}/${base}.pb.cc ${PROTO_GEN_DIR}/${base}.grpc.pb.cc)
endforeach()

add_library(fairserve_proto STATIC ${PROTO_SRCS})
add_library(fairserve::proto ALIAS fairserve_proto)
target_include_directories(fairserve_proto SYSTEM PUBLIC ${PROTO_GEN_DIR})
target_link_libraries(fairserve_proto PUBLIC protobuf::libprotobuf gRPC::grpc++)
target_compile_options(fairserve_proto PRIVATE -w)
