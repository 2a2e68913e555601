// The one translation unit holding Asio's and Beast's compiled code for a binary.
#include <boost/asio/impl/src.hpp>
#include <boost/asio/ssl/impl/src.hpp>
#include <boost/beast/src.hpp>
