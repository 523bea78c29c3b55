#include "app/application.h"

int main(int argc, char** argv) { return adpulse::RunApplication(argc, argv); }
