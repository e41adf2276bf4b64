from onnxstyle.cli import main

main()
