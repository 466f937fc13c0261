"""Processing models (.model3) shipped with CloudFree and the code that builds and loads them."""
